"""PostgreSQL behind the `Database` contract (psycopg 3): a pool sized to the lanes, a relaxed
pool for the commits that need not wait for the disk, and `:name` placeholders translated."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg
import psycopg_pool

from notifier.errors import StoreError, StoreUnavailable
from notifier.ledger.database import Database, Params, Row, Tx

log = logging.getLogger(__name__)

# One process rarely needs more: the worker claims in batches, webhooks group-commit.
PG_POOL_MIN_SIZE = 1
PG_POOL_MAX_SIZE = 8
# The connections of the worker's own writes (`durable=False`): one claim and one commit of
# outcomes (two in flight, delivery/recorder.py) per worker, two workers (email, chat).
PG_RELAXED_POOL_MAX_SIZE = 6
# How long open() and a checkout wait for a PostgreSQL connection before calling it unreachable.
PG_CONNECT_TIMEOUT_S = 10.0
# psycopg_pool retries a lost connection with a doubling delay (1, 2, 4 ... s) for this long,
# then gives up on it and starts afresh when a caller waits: so however long an outage lasts,
# a connection is tried at least every ~10 s and the service resumes soon after the server.
# (Its default, 5 minutes, let the delay grow past two minutes.)
PG_RECONNECT_TIMEOUT_S = 20.0


def _quiet(task: asyncio.Task[None]) -> None:
    """Collect a background task's exception: a failed pool check is retried by the next."""
    if not task.cancelled():
        task.exception()


# A single-quoted literal, a double-quoted identifier, a `::` cast, a `:name`, or a lone `%`.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|:([A-Za-z_]\w*)|%")


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """Translate `:name` placeholders to psycopg's `%(name)s`.

    Leaves `::type` casts and the `:` of quoted text alone; doubles every literal `%`, in
    quoted text too (psycopg reads placeholders without regard to quotes: `LIKE '%/0'`
    would be a bad placeholder `%/`).
    """

    def repl(m: re.Match[str]) -> str:
        tok = m.group(0)
        if m.group(1) is not None:
            return f"%({m.group(1)})s"
        return tok.replace("%", "%%")

    return _TOKEN.sub(repl, sql)


def redact_url(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _PgTx:
    def __init__(self, db: PostgresDatabase, cur: psycopg.AsyncCursor[Row]) -> None:
        self._db = db
        self._cur = cur

    async def execute(self, sql: str, params: Params | None = None) -> int:
        try:
            await self._cur.execute(to_pyformat(sql), params or {})
        except psycopg.Error as exc:
            raise self._db.error(exc) from exc
        return self._cur.rowcount

    async def executemany(self, sql: str, rows: Sequence[Params]) -> int:
        if not rows:
            return 0
        try:
            await self._cur.executemany(to_pyformat(sql), rows)
        except psycopg.Error as exc:
            raise self._db.error(exc) from exc
        return self._cur.rowcount

    async def insert_ids(self, sql: str, rows: Sequence[Params]) -> list[int | None]:
        if not rows:
            return []
        ids: list[int | None] = []
        try:
            # Pipelined like executemany; one result per row, empty where nothing was inserted.
            await self._cur.executemany(to_pyformat(sql + " RETURNING id"), rows, returning=True)
            while True:
                row = await self._cur.fetchone()
                ids.append(None if row is None else int(row[0]))
                if not self._cur.nextset():
                    break
        except psycopg.Error as exc:
            raise self._db.error(exc) from exc
        return ids

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        try:
            await self._cur.execute(to_pyformat(sql), params or {})
            return await self._cur.fetchall()
        except psycopg.Error as exc:
            raise self._db.error(exc) from exc

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        try:
            await self._cur.execute(to_pyformat(sql), params or {})
            return await self._cur.fetchone()
        except psycopg.Error as exc:
            raise self._db.error(exc) from exc


class PostgresDatabase(Database):
    """A psycopg 3 connection pool; each transaction checks out one connection."""

    dialect: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, url: str, *, max_size: int = PG_POOL_MAX_SIZE) -> None:
        self._url = url
        self.name = redact_url(url)
        self._max_size = max_size
        # libpq's own `connect_timeout` (seconds) in the URL also bounds the wait in open().
        query = dict(parse_qsl(urlsplit(url).query))
        self._open_timeout = float(query.get("connect_timeout", PG_CONNECT_TIMEOUT_S))
        self._pool: psycopg_pool.AsyncConnectionPool | None = None
        # Autocommit connections with `synchronous_commit = off`, for `durable=False`.
        self._relaxed: psycopg_pool.AsyncConnectionPool | None = None
        self._checking: asyncio.Task[None] | None = None

    def error(self, exc: BaseException) -> StoreError:
        if isinstance(exc, psycopg.OperationalError):
            # The server went away (restart, outage) or refused us: replace every idle
            # connection now rather than fail once on each of them.
            self._check_soon()
            return StoreUnavailable(f"PostgreSQL database {self.name} is unavailable: {exc}")
        return StoreError(f"PostgreSQL database {self.name} failed: {exc}")

    def _check_soon(self) -> None:
        """Start `pool.check()` (drops broken idle connections, refills) unless one runs."""
        pools = [p for p in (self._pool, self._relaxed) if p is not None]
        if not pools or (self._checking is not None and not self._checking.done()):
            return

        async def check() -> None:
            for pool in pools:
                await pool.check()

        try:
            self._checking = asyncio.get_running_loop().create_task(
                check(), name="notifier-pg-check"
            )
        except RuntimeError:
            return  # no running loop (closing)
        self._checking.add_done_callback(_quiet)

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = psycopg_pool.AsyncConnectionPool(
            self._url,
            min_size=PG_POOL_MIN_SIZE,
            max_size=self._max_size,
            timeout=self._open_timeout,
            reconnect_timeout=PG_RECONNECT_TIMEOUT_S,
            kwargs={"autocommit": False},
            open=False,
            name="notifier",
        )
        try:
            await pool.open(wait=True, timeout=self._open_timeout)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await pool.close()
            raise StoreError(f"PostgreSQL database {self.name} is unreachable: {exc}") from exc
        self._pool = pool
        # No connection until the first `durable=False` statement: most commands never run one.
        self._relaxed = psycopg_pool.AsyncConnectionPool(
            self._url,
            min_size=0,
            max_size=PG_RELAXED_POOL_MAX_SIZE,
            timeout=self._open_timeout,
            reconnect_timeout=PG_RECONNECT_TIMEOUT_S,
            kwargs={"autocommit": True},
            configure=_relax,
            open=False,
            name="notifier-relaxed",
        )
        await self._relaxed.open(wait=False)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        relaxed, self._relaxed = self._relaxed, None
        if self._checking is not None:
            self._checking.cancel()
            await asyncio.gather(self._checking, return_exceptions=True)
            self._checking = None
        if relaxed is not None:
            await relaxed.close()
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _connection(
        self, pool: psycopg_pool.AsyncConnectionPool[Any] | None
    ) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """A connection of `pool`; the pool's and the driver's errors, the caller's own
        statements' included, as the ledger's (`StoreUnavailable`, `self.error`)."""
        if pool is None:
            raise StoreError(f"PostgreSQL database {self.name} is not open: call open() first")
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout as exc:
            raise StoreUnavailable(
                f"PostgreSQL database {self.name} is unreachable: {exc}"
            ) from exc
        except psycopg.Error as exc:
            raise self.error(exc) from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        async with self._connection(self._pool) as conn:
            # conn.transaction() commits on a clean exit and rolls back on an exception.
            async with conn.transaction(), conn.cursor() as cur:
                yield _PgTx(self, cur)

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        return self._transaction()

    @asynccontextmanager
    async def _autocommit(self, durable: bool) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """A pooled connection in autocommit: one statement is its own transaction, one round
        trip instead of three (BEGIN, the statement, COMMIT). Not `durable`: one of the
        relaxed pool's, whose commits do not wait for the server's disk flush."""
        async with self._connection(self._pool if durable else self._relaxed) as conn:
            if not durable:
                yield conn
                return
            await conn.set_autocommit(True)
            try:
                yield conn
            finally:
                if not conn.broken:
                    await conn.set_autocommit(False)

    async def execute(self, sql: str, params: Params | None = None, *, durable: bool = True) -> int:
        """One statement as its own transaction (autocommit)."""
        async with self._autocommit(durable) as conn:
            cur = await conn.execute(to_pyformat(sql), params or {})
            return cur.rowcount

    async def fetchall(
        self, sql: str, params: Params | None = None, *, durable: bool = True
    ) -> list[Row]:
        """One statement as its own transaction (autocommit), e.g. the worker's claim, an
        `UPDATE ... RETURNING` that is atomic on its own."""
        async with self._autocommit(durable) as conn:
            cur = await conn.execute(to_pyformat(sql), params or {})
            return await cur.fetchall()


async def _relax(conn: psycopg.AsyncConnection[Any]) -> None:
    """A relaxed pool's connection: its commits return before the WAL reaches the disk (the
    durability SQLite has here with WAL and `synchronous = NORMAL`). Set per connection, not
    in the URL, so that the URL's own `options` stay as they are."""
    await conn.execute("SET synchronous_commit = off")

"""SQLite behind the `Database` contract: one connection in a dedicated thread, WAL, and a
checkpointer that keeps the write-ahead log bounded."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from notifier.errors import StoreError, StoreUnavailable
from notifier.ledger.database import Database, Params, Row, T, Tx
from notifier.private_files import create_private, private_dir, warn_if_open

log = logging.getLogger(__name__)


# SQLite waits this long for another connection's write lock before giving up ("locked").
SQLITE_BUSY_TIMEOUT_MS = 5000
# Rows changed (inserted, updated, deleted) between two background WAL checkpoints: about
# SQLite's own default of 1000 pages, a few MB of WAL.
SQLITE_CHECKPOINT_CHANGES = 1000
# Past this size the background checkpoint makes writers wait and resets the WAL.
SQLITE_WAL_LIMIT_BYTES = 64 * 1024 * 1024


class _SQLiteTx:
    """Statements of one transaction. `BEGIN IMMEDIATE` is issued with the first one, so
    that a wait for the write lock (see `SQLiteDatabase.run`) covers both."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self.begun = False

    def _begin(self, conn: sqlite3.Connection) -> None:
        if not self.begun:
            conn.execute("BEGIN IMMEDIATE")
            self.begun = True

    async def execute(self, sql: str, params: Params | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            self._begin(conn)
            return conn.execute(sql, params or {}).rowcount

        return await self._db.run(run)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> int:
        if not rows:
            return 0

        def run(conn: sqlite3.Connection) -> int:
            self._begin(conn)
            return conn.executemany(sql, rows).rowcount

        return await self._db.run(run)

    async def insert_ids(self, sql: str, rows: Sequence[Params]) -> list[int | None]:
        # One execute per row and its rowid: cheaper than executemany and then a SELECT of
        # the ids by key (the webhook accept's last statement, 3% of its instructions).
        def run(conn: sqlite3.Connection) -> list[int | None]:
            self._begin(conn)
            ids: list[int | None] = []
            for params in rows:
                cur = conn.execute(sql, params)
                ids.append(cur.lastrowid if cur.rowcount else None)
            return ids

        return await self._db.run(run)

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        def run(conn: sqlite3.Connection) -> list[Row]:
            self._begin(conn)
            return conn.execute(sql, params or {}).fetchall()

        return await self._db.run(run)

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        def run(conn: sqlite3.Connection) -> Row | None:
            self._begin(conn)
            row: Row | None = conn.execute(sql, params or {}).fetchone()
            return row

        return await self._db.run(run)


class _Checkpointer:
    """Copies the WAL back into the database file on a thread and connection of its own.

    SQLite's automatic checkpoint runs inside whichever commit crosses 1000 pages, with two
    fsyncs: on the event loop that commit took about 6 ms instead of 0.1 ms, a third of all
    commit time under webhook load. A PASSIVE checkpoint never blocks writers, so here it runs
    beside them and the commits on the loop only append to the WAL; past
    SQLITE_WAL_LIMIT_BYTES it resets the WAL, making writers wait for a moment.
    """

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifier-wal")
        self._conn: sqlite3.Connection | None = None  # only touched on self._thread
        self._page_size = 0
        self._running = False
        self._changes_at_last = 0

    def after_commit(self, total_changes: int) -> None:
        """Called on the loop after a write; starts a checkpoint when enough has changed."""
        if self._running or total_changes - self._changes_at_last < SQLITE_CHECKPOINT_CHANGES:
            return
        self._changes_at_last = total_changes
        self._running = True
        self._thread.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    f"file:{self._path}?mode=rw", uri=True, isolation_level=None
                )
                self._conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms:d}")
                (self._page_size,) = self._conn.execute("PRAGMA page_size").fetchone()
            _, frames, _ = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames * self._page_size > SQLITE_WAL_LIMIT_BYTES:
                # Under a steady stream of commits a PASSIVE checkpoint never catches up to the
                # end of the WAL, so the WAL never starts over and keeps growing. Copy all of it
                # now, holding the write lock for a few ms (writers wait, on the database
                # thread), and truncate the file.
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            # Not fatal: the WAL only grows until the next try (or the last close) copies it.
            log.warning(
                "SQLite WAL checkpoint failed",
                extra={"action": "sqlite_checkpoint_failed", "error": str(exc)},
            )
        finally:
            self._running = False

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Wait for a running checkpoint, then close (blocking: call from a thread)."""
        self._thread.submit(self._close_conn).result()
        self._thread.shutdown(wait=True)


class SQLiteDatabase(Database):
    """One sqlite3 connection in WAL mode, used from one dedicated thread.

    One connection because SQLite has one writer anyway; an asyncio.Lock serialises the
    transactions on it. `BEGIN IMMEDIATE` takes the write lock up front so two processes
    never deadlock upgrading a read lock. Statements run inline (see `run`); the thread is
    for waiting on another process's lock. aiosqlite made a hop per cursor operation,
    about 80 us each here, ten times the cost of the statements themselves.
    """

    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.path.startswith("/") or parts.netloc:
            raise StoreError(
                f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db"
            )
        raw = parts.path[1:]  # sqlite:///var/x.db -> var/x.db ; sqlite:////abs.db -> /abs.db
        if not raw:
            raise StoreError(f"bad SQLite URL {url!r}: no file path")
        query = dict(parse_qsl(parts.query))
        self.path = raw
        self.busy_timeout_ms = int(query.get("busy_timeout", SQLITE_BUSY_TIMEOUT_MS))
        self.read_only = query.get("mode") == "ro"
        self.name = f"sqlite:///{raw}"
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._checkpointer: _Checkpointer | None = None
        self._lock = asyncio.Lock()

    def error(self, exc: BaseException) -> StoreError:
        """A StoreError that says what is wrong with the file, not only what the driver said."""
        code = getattr(exc, "sqlite_errorname", "") or ""
        kind: type[StoreError] = StoreError
        if code.startswith("SQLITE_READONLY"):
            why = "is read-only (check the permissions of the file and its directory)"
        elif code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            why = f"is locked by another connection (waited {self.busy_timeout_ms} ms)"
            kind = StoreUnavailable
        elif code.startswith("SQLITE_FULL"):
            why = "cannot grow: the disk is full (nothing of the failed write was kept)"
            kind = StoreUnavailable
        elif code.startswith("SQLITE_IOERR"):
            why = "cannot be read or written (I/O error: disk full or failing?)"
            kind = StoreUnavailable
        elif code.startswith("SQLITE_CANTOPEN"):
            why = "cannot be opened (missing directory or no permission)"
        else:
            why = "failed"
        return kind(f"SQLite database {self.path} {why}: {exc}")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)`; driver errors become StoreError. Callers hold the lock.

        Inline first, without waiting for locks: a statement of this service's takes
        microseconds, a hop to a thread and back about 100 us. Only when another process
        holds the write lock (SQLITE_BUSY) does it move to the database thread and wait
        there, up to the busy timeout, so that the event loop never blocks on a lock.
        """
        conn, thread = self._conn, self._thread
        if conn is None or thread is None:
            raise StoreError(f"SQLite database {self.path} is not open: call open() first")
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
                raise self.error(exc) from exc
        except sqlite3.Error as exc:
            raise self.error(exc) from exc

        def waiting(conn: sqlite3.Connection) -> T:
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms:d}")
            try:
                return fn(conn)
            finally:
                conn.execute("PRAGMA busy_timeout = 0")

        try:
            return await asyncio.get_running_loop().run_in_executor(thread, waiting, conn)
        except sqlite3.Error as exc:
            raise self.error(exc) from exc

    def _connect(self) -> sqlite3.Connection:
        memory = self.path == ":memory:"
        target = (
            self.path if memory else f"file:{self.path}?mode={'ro' if self.read_only else 'rwc'}"
        )
        conn = sqlite3.connect(
            target, uri=not memory, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms:d}")
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if not memory and not self.read_only:
                conn.execute("PRAGMA wal_autocheckpoint = 0")  # see _Checkpointer
            conn.execute("PRAGMA busy_timeout = 0")  # `run` waits for locks in the thread
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment with no other transaction, and SQLite does not
        # wait for it (no busy handler): retry within the busy timeout. Usually the file
        # is in WAL mode already and this is a read.
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while str(mode).lower() != "wal" and self.path != ":memory:":
            try:
                (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _private_file(self) -> None:
        """The file's directory, and (to write) the file, made private before SQLite makes
        them 0644: the ledger holds every message and address, and SQLite gives the -wal
        and -shm files the database file's mode. An existing file keeps its mode (a warning
        says if others can read it)."""
        path = Path(self.path)
        try:
            private_dir(path.parent)
        except OSError as exc:
            raise StoreError(f"SQLite database {self.path}: cannot create its directory") from exc
        if self.read_only:
            return
        try:
            if path.exists() or not create_private(path):
                warn_if_open(path, "the ledger database")
        except OSError as exc:
            raise StoreError(f"SQLite database {self.path}: cannot create it: {exc}") from exc

    async def data_version(self) -> int | None:
        """`PRAGMA data_version`: changes when another connection (another process) commits;
        a read of the file header, no transaction, no lock."""

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])

        async with self._lock:
            return await self.run(read)

    async def open(self) -> None:
        if self._conn is not None:
            return
        if self.path != ":memory:":
            self._private_file()
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifier-sqlite")
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(thread, self._connect)
        except sqlite3.Error as exc:
            thread.shutdown(wait=False)
            raise self.error(exc) from exc
        self._thread = thread
        if self.path != ":memory:" and not self.read_only:
            self._checkpointer = _Checkpointer(self.path, self.busy_timeout_ms)

    async def close(self) -> None:
        if self._conn is None or self._thread is None:
            return
        async with self._lock:
            conn, thread = self._conn, self._thread
            checkpointer, self._checkpointer = self._checkpointer, None
            self._conn, self._thread = None, None
            loop = asyncio.get_running_loop()
            if checkpointer is not None:
                await loop.run_in_executor(thread, checkpointer.close)
            # The last connection to close checkpoints what is left and removes the WAL.
            await loop.run_in_executor(thread, conn.close)
            thread.shutdown(wait=True)

    def _written(self) -> None:
        if self._checkpointer is not None and self._conn is not None:
            self._checkpointer.after_commit(self._conn.total_changes)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            tx = _SQLiteTx(self)
            try:
                yield tx
            except BaseException:
                if tx.begun:
                    try:
                        await self.run(lambda conn: conn.execute("ROLLBACK"))
                    except StoreError:
                        pass  # the original error is the one worth reporting
                raise
            if tx.begun:
                try:
                    await self.run(lambda conn: conn.execute("COMMIT"))
                except StoreError:
                    # A failed COMMIT (disk full, I/O error) may have rolled back already.
                    await self.run(lambda conn: conn.in_transaction and conn.execute("ROLLBACK"))
                    raise
                self._written()

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        return self._transaction()

    # Single statements run in autocommit (atomic on their own): one hop, not three.

    async def execute(self, sql: str, params: Params | None = None, *, durable: bool = True) -> int:
        async with self._lock:
            count = await self.run(lambda conn: conn.execute(sql, params or {}).rowcount)
            self._written()
            return count

    async def fetchall(
        self, sql: str, params: Params | None = None, *, durable: bool = True
    ) -> list[Row]:
        async with self._lock:
            rows = await self.run(lambda conn: conn.execute(sql, params or {}).fetchall())
            self._written()
            return rows

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        def run(conn: sqlite3.Connection) -> Row | None:
            row: Row | None = conn.execute(sql, params or {}).fetchone()
            return row

        async with self._lock:
            row = await self.run(run)
            self._written()
            return row

"""The database contract: `Database` (a connection owner) and `Tx` (a transaction), written once
for both dialects (`sqlite.py`, `postgres.py`; `db.connect` picks one from the URL).

SQL is written once, with `:name` placeholders; each dialect runs it as is (SQLite) or
translated (PostgreSQL's `%(name)s`). Every driver error leaves a dialect as a `StoreError`
naming the database (never its password), with the driver's exception as `__cause__`; a
fault that passes (connection lost or refused, locked, disk full) is a `StoreUnavailable`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar

Params = Mapping[str, object]
Row = tuple[Any, ...]
T = TypeVar("T")


class Tx(Protocol):
    """The statements available inside `Database.transaction()`."""

    async def execute(self, sql: str, params: Params | None = None) -> int: ...

    async def executemany(self, sql: str, rows: Sequence[Params]) -> int: ...

    async def insert_ids(self, sql: str, rows: Sequence[Params]) -> list[int | None]:
        """Run a one-row INSERT into a table keyed `id` once per row: each row's new id, or
        None where it inserted nothing (ON CONFLICT DO NOTHING)."""
        ...

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None: ...


class Database(abc.ABC):
    """One database, opened once per process and shared; also an async context manager.

    The statement methods outside `transaction()` each run in their own short transaction.
    """

    dialect: Literal["sqlite", "postgresql"]
    #: The URL without password, safe for logs and error messages.
    name: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect. Raises StoreError if the database cannot be opened."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; safe to call twice."""

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """Commit on a clean exit, roll back (and re-raise) on any exception."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def execute(self, sql: str, params: Params | None = None, *, durable: bool = True) -> int:
        """Run one statement; return its rowcount.

        `durable=False`: the commit may return before the database server has flushed it to
        disk, so a crash of that server (not of this process) can undo it. For the worker's
        claims and outcomes only, whose loss means a send made again, never a send lost.
        SQLite here always commits so (WAL, `synchronous = NORMAL`).
        """
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> int:
        """Run one statement per row, atomically; return the summed rowcount."""
        async with self.transaction() as tx:
            return await tx.executemany(sql, rows)

    async def fetchall(
        self, sql: str, params: Params | None = None, *, durable: bool = True
    ) -> list[Row]:
        """Run one statement; return its rows. `durable` as for `execute`."""
        async with self.transaction() as tx:
            return await tx.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        async with self.transaction() as tx:
            return await tx.fetchone(sql, params)

    async def data_version(self) -> int | None:
        """A number that changes when another process commits to this database, where the
        database says so cheaply (SQLite's `PRAGMA data_version`); None where it does not."""
        return None

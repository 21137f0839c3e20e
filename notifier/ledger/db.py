"""Open the ledger's database from its URL: SQLite (`sqlite.py`) or PostgreSQL (`postgres.py`),
both behind the `Database` contract (`database.py`)."""

from __future__ import annotations

from notifier.errors import StoreError
from notifier.ledger.database import Database, Row, Tx
from notifier.ledger.postgres import PostgresDatabase, redact_url, to_pyformat
from notifier.ledger.sqlite import SQLiteDatabase

__all__ = [
    "Database",
    "PostgresDatabase",
    "Row",
    "SQLiteDatabase",
    "Tx",
    "connect",
    "redact_url",
    "to_pyformat",
]


def connect(url: str) -> Database:
    """Build (not open) the Database for a URL.

    `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (query: `busy_timeout` in ms,
    `mode=ro`), `postgresql://user:password@host:port/db` (any libpq URL).
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return SQLiteDatabase(url)
    if scheme in ("postgresql", "postgres"):
        return PostgresDatabase(url)
    raise StoreError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")

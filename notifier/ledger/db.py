"""Open the ledger's database from its URL: SQLite (`sqlite.py`) or PostgreSQL (`postgres.py`),
both behind the `Database` contract (`database.py`).

The PostgreSQL driver (psycopg, about 0.1 s to import) is loaded only for a PostgreSQL URL:
every `notifier` command on the embedded SQLite ledger starts that much sooner.
"""

from __future__ import annotations

from notifier.errors import StoreError
from notifier.ledger.database import Database, Row, Tx
from notifier.ledger.sqlite import SQLiteDatabase

__all__ = ["Database", "Row", "SQLiteDatabase", "Tx", "connect"]


def connect(url: str) -> Database:
    """Build (not open) the Database for a URL.

    `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (query: `busy_timeout` in ms,
    `mode=ro`), `postgresql://user:password@host:port/db` (any libpq URL).
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return SQLiteDatabase(url)
    if scheme in ("postgresql", "postgres"):
        from notifier.ledger.postgres import PostgresDatabase

        return PostgresDatabase(url)
    raise StoreError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")

"""Database fixtures (a pytest plugin: `pytest_plugins = ["tests.conftest_db"]`).

- `sqlite_url`: a fresh SQLite file in tmp_path (not created until opened).
- `pg_url`: a fresh PostgreSQL database per test, dropped afterwards. A server that does not
  answer FAILS the test (never a skip: `make test` starts PostgreSQL through scripts/test-deps,
  so a down server is a fault to see). To run without PostgreSQL, deselect: `-m "not postgres"`.
- `db_url`: parametrised over both; `store`: a migrated `Store` on `db_url`.
- `open_store(url)`: an async context manager for a second (or third) Store on the same URL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest

from notifier.ledger.db import connect
from notifier.ledger.store import Store

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_TEST_URL = "postgresql://postgres@127.0.0.1:5432/{name}"
PG_DOWN = (
    "!!! PostgreSQL NOT AVAILABLE (user postgres on 127.0.0.1:5432): this test FAILS. "
    "Start it with scripts/test-deps (`make test` runs it), or leave PostgreSQL out on "
    "purpose: pytest -m 'not postgres' !!!"
)

# Checked once per session: a down server should cost one connect timeout, not one per test.
_pg_error: list[str] = []


async def _admin() -> psycopg.AsyncConnection[tuple[object, ...]]:
    if _pg_error:
        pytest.fail(f"{PG_DOWN} ({_pg_error[0]})", pytrace=False)
    try:
        return await psycopg.AsyncConnection.connect(
            PG_ADMIN_URL, autocommit=True, connect_timeout=3
        )
    except psycopg.Error as exc:
        _pg_error.append(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        pytest.fail(f"{PG_DOWN} ({_pg_error[0]})", pytrace=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'notifier.db'}"  # tmp_path is absolute: sqlite:////...


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    name = f"notifier_test_{uuid.uuid4().hex[:12]}"
    async with await _admin() as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_TEST_URL.format(name=name)
    finally:
        async with await _admin() as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, empty database of each dialect."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@asynccontextmanager
async def open_store(url: str, *, migrate: bool = True) -> AsyncIterator[Store]:
    """A Store on its own connection(s) to `url`, closed on exit."""
    async with connect(url) as db:
        store = Store(db)
        if migrate:
            await store.migrate()
        yield store


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A migrated Store on a fresh database, one per dialect."""
    async with open_store(db_url) as s:
        yield s

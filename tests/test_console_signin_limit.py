"""The failed-token limit is kept in the database: instances that share one count the same
failures (issue: per-process limits gave N instances N times the guesses). It guards the
console's sign-in form, the admin API's bearer token (one count: both try the admin token) and
the calendar feed's token (a count of its own), and a success clears nothing (issue 17: a
viewer's sign-in cleared the failures of whoever guessed the admin token from the same
address). Real SQLite and the machine's real PostgreSQL; two `App`s on one database stand for
two instances behind one address. A database fault during sign-in is a 503 page."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from notifier.ledger.console import ConsoleStore
from notifier.ledger.store import Store
from notifier.service import App
from notifier.web import create_web_app
from notifier.web.auth import FAILED_SIGNIN_WINDOW, MAX_FAILED_SIGNINS, SESSION_COOKIE
from tests.conftest_db import PG_ADMIN_URL
from tests.console_fixtures import (
    ADMIN_TOKEN,
    NOW,
    VIEWER_TOKEN,
    console_settings,
    hook_secret_env,
)

__all__ = ["hook_secret_env"]

Client = TestClient[Any, Any]
CALENDAR_TOKEN = "calendar-token-for-tests"


class Clock:
    """One wall clock for both instances, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
async def pair(
    tmp_path: Path, db_url: str, clock: Clock, hook_secret_env: None
) -> AsyncIterator[tuple[Client, Client, App]]:
    """Two instances (own App, own HTTP side, own connections) on one database."""
    async with AsyncExitStack() as stack:
        clients: list[Client] = []
        apps: list[App] = []
        for name in ("a", "b"):
            settings = console_settings(
                tmp_path / name, database_url=db_url, calendar_token=SecretStr(CALENDAR_TOKEN)
            )
            app = await stack.enter_async_context(App(settings, clock=clock))
            apps.append(app)
            clients.append(
                await stack.enter_async_context(TestClient(TestServer(create_web_app(app))))
            )
        yield clients[0], clients[1], apps[0]


async def form_token(c: Client) -> str:
    page = await (await c.get("/")).text()
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def sign_in(c: Client, token: str, *, form: str | None = None) -> Any:
    return await c.post(
        "/signin",
        data={"csrf": form or await form_token(c), "token": token, "next": "/"},
        allow_redirects=False,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def rows(app: App) -> int:
    return await ConsoleStore(app.store.db).signin_failures()


async def test_failures_on_one_instance_count_on_the_other(
    pair: tuple[Client, Client, App], clock: Clock
) -> None:
    a, b, app = pair
    for i in range(MAX_FAILED_SIGNINS):
        assert (await sign_in(a if i % 2 else b, "wrong-token")).status == 401
    clock.now = NOW + 100
    for c in (a, b):  # the right token, on either instance, but too many failures before it
        resp = await sign_in(c, ADMIN_TOKEN)
        body = await resp.text()
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "201"  # the first failure leaves at NOW + 300
        assert "登录失败次数过多，请 201 秒后再试。" in body and "try again in 201 s" in body
        assert SESSION_COOKIE not in resp.cookies
    clock.now = NOW + FAILED_SIGNIN_WINDOW + 1
    resp = await sign_in(b, ADMIN_TOKEN)
    assert resp.status == 303 and SESSION_COOKIE in resp.cookies
    assert await rows(app) == MAX_FAILED_SIGNINS  # a success writes nothing, clears nothing


async def test_a_viewer_signing_in_does_not_reset_the_count_of_admin_token_guesses(
    pair: tuple[Client, Client, App],
) -> None:
    a, b, _ = pair
    for _ in range(MAX_FAILED_SIGNINS - 1):
        assert (await sign_in(a, "wrong-admin-guess")).status == 401
    assert (await sign_in(b, VIEWER_TOKEN)).status == 303  # the guesser's own viewer token
    overview = await b.get("/")  # signed in: the overview, on either dialect
    assert overview.status == 200 and '运行时间 <span class="en">Uptime' in await overview.text()
    b.session.cookie_jar.clear()  # signed out again, the same address
    assert (await sign_in(a, "wrong-admin-guess")).status == 401  # the limit-th failure
    for c in (a, b):  # no fresh allowance: the right admin token is refused unseen
        resp = await sign_in(c, ADMIN_TOKEN)
        assert resp.status == 429 and SESSION_COOKIE not in resp.cookies


async def test_wrong_bearer_tokens_count_with_the_sign_in_form_on_every_instance(
    pair: tuple[Client, Client, App],
) -> None:
    a, b, _ = pair
    for _ in range(2):
        assert (await sign_in(a, "wrong-token")).status == 401
    for i in range(MAX_FAILED_SIGNINS - 2):
        api = await (a, b)[i % 2].get("/api/config", headers=bearer(f"guess-{i}"))
        assert api.status == 401
    for c in (a, b):  # the right admin token, by either door, on either instance: refused
        resp = await c.get("/api/config", headers=bearer(ADMIN_TOKEN))
        body = await resp.json()
        assert resp.status == 429, body
        assert body["error"] == "too many attempts"
        assert resp.headers["Retry-After"] == "301"
        assert (await sign_in(c, ADMIN_TOKEN)).status == 429
    # The calendar token is another secret, with a count of its own.
    assert (await a.get(f"/calendar.ics?token={CALENDAR_TOKEN}")).status == 200


async def test_wrong_calendar_tokens_are_limited_apart_from_the_console(
    pair: tuple[Client, Client, App], clock: Clock
) -> None:
    a, b, _ = pair
    for i in range(MAX_FAILED_SIGNINS):
        assert (await (a, b)[i % 2].get(f"/calendar.ics?token=guess-{i}")).status == 401
    clock.now = NOW + 10
    for c in (a, b):
        resp = await c.get(f"/calendar.ics?token={CALENDAR_TOKEN}")
        assert resp.status == 429 and resp.headers["Retry-After"] == "291"
        assert "BEGIN:VCALENDAR" not in await resp.text()
    # Calendar clients with an old token do not lock the office out of the console.
    assert (await sign_in(a, ADMIN_TOKEN)).status == 303
    assert (await b.get("/api/config", headers=bearer(ADMIN_TOKEN))).status == 200
    clock.now = NOW + FAILED_SIGNIN_WINDOW + 1
    assert (await b.get(f"/calendar.ics?token={CALENDAR_TOKEN}")).status == 200


async def test_simultaneous_guesses_over_two_instances_get_exactly_the_limit(
    pair: tuple[Client, Client, App],
) -> None:
    a, b, app = pair
    forms = [await form_token(c) for c in (a, b)]
    tries = 4 * MAX_FAILED_SIGNINS
    answers = await asyncio.gather(
        *(sign_in((a, b)[i % 2], f"guess-{i}", form=forms[i % 2]) for i in range(tries))
    )
    statuses = sorted(r.status for r in answers)
    assert statuses == [401] * MAX_FAILED_SIGNINS + [429] * (tries - MAX_FAILED_SIGNINS)
    assert await rows(app) == MAX_FAILED_SIGNINS


# --- the window, at the store ---------------------------------------------------------------


async def test_the_window_slides_and_a_refusal_says_when_the_oldest_failure_leaves(
    store: Store,
) -> None:
    limiter = ConsoleStore(store.db)
    checked: list[float] = []

    async def attempt(at: float, *, right: bool = False, scope: str = "admin") -> float:
        def check() -> bool:
            checked.append(at)
            return right

        found = await limiter.try_token(scope, "192.0.2.7", now=at, limit=3, window=10, check=check)
        assert found.ok == (right and found.wait == 0)
        return found.wait

    assert [await attempt(t) for t in (0, 1, 2)] == [0, 0, 0]
    assert await attempt(3, right=True) == 7  # the failure at 0 leaves the window at 10
    assert await attempt(9.5) == 0.5
    assert checked == [0, 1, 2]  # refused attempts are not even looked at
    assert await attempt(10, right=True) == 0  # 0 has left: checked, right, nothing recorded
    assert await attempt(10.2) == 0  # a third failure in the window again (1, 2, 10.2)
    assert await attempt(10.5) == 0.5  # 1 leaves at 11
    assert await attempt(10.5, scope="calendar") == 0  # another secret, its own count
    other = await limiter.try_token(
        "admin", "198.51.100.1", now=10.5, limit=3, window=10, check=lambda: False
    )
    assert other.wait == 0 and not other.ok


async def test_rows_past_the_window_are_deleted_so_the_table_stays_small(store: Store) -> None:
    limiter = ConsoleStore(store.db)

    async def attempt(client: str, at: float, *, right: bool = False) -> None:
        await limiter.try_token("admin", client, now=at, limit=5, window=300, check=lambda: right)

    for i in range(200):  # a spray from many addresses, one a second
        await attempt(f"203.0.113.{i}", float(i))
    assert await limiter.signin_failures() == 200
    await attempt("192.0.2.1", 350.0)
    assert await limiter.signin_failures() == 200 - 51 + 1  # those at 0 ... 50 left the window
    await attempt("192.0.2.1", 360.0, right=True)
    assert await limiter.signin_failures() == 150  # a success writes nothing
    await attempt("192.0.2.1", 700.0)  # all before 400 go
    assert await limiter.signin_failures() == 1


# --- a database fault -----------------------------------------------------------------------


@contextmanager
def database_down(url: str) -> Iterator[None]:
    """The database refuses this service for a while: SQLite locked by another connection,
    PostgreSQL's database closed to connections and its sessions ended (this test's own
    database only; the server keeps running)."""
    if url.startswith("sqlite"):
        locker = sqlite3.connect(urlsplit(url).path[1:], isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        return
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def faulty_url(db_url: str) -> str:
    """`db_url`, giving up within a second when the database does not answer."""
    if db_url.startswith("sqlite"):
        return db_url + "?busy_timeout=100"
    return db_url + "?connect_timeout=1"


async def test_a_database_fault_during_sign_in_is_a_503_page_then_sign_in_works(
    tmp_path: Path, faulty_url: str, hook_secret_env: None
) -> None:
    settings = console_settings(tmp_path, database_url=faulty_url)
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            form = await form_token(c)
            with database_down(faulty_url):
                resp = await sign_in(c, ADMIN_TOKEN, form=form)
                body = await resp.text()
            assert resp.status == 503
            assert resp.content_type == "text/html"
            assert resp.headers["Retry-After"] == "5"
            assert "数据库暂不可用 Database unavailable" in body
            assert "请 5 秒后重试" in body and "try again in 5 s" in body
            assert "Traceback" not in body and SESSION_COOKIE not in resp.cookies
            for _ in range(30):  # the pool replaces its ended connections
                resp = await sign_in(c, ADMIN_TOKEN)
                if resp.status != 503:
                    break
                await asyncio.sleep(0.1)
            assert resp.status == 303 and SESSION_COOKIE in resp.cookies

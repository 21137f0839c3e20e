"""Issue 17's console findings over real HTTP: `next` never leaves the site, the sign-in form
is bound to its browser, each token opens one door and changing one ends its sessions,
viewers never see an unsubscribe token, and a first run without an admin token prints a
one-time sign-in link. Real App, real aiohttp server, real SQLite file."""

from __future__ import annotations

import dataclasses
import logging
import re
import sqlite3
from pathlib import Path

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr, ValidationError

from notifier.ledger.models import State
from notifier.service import App
from notifier.web import bound_port, create_web_app, start_http
from notifier.web.auth import SESSION_COOKIE, SIGNIN_LINK_PATH, SIGNIN_LINK_SECONDS
from notifier.web.console import announce_signin_link
from tests.console_fixtures import (
    ADMIN_TOKEN,
    NOW,
    VIEWER_TOKEN,
    Client,
    client,
    console_settings,
    form_token,
    hook_secret_env,
    row,
    sign_in,
)

__all__ = ["client", "hook_secret_env"]


# --- 6: the redirect after sign-in, and login CSRF -----------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example/x",  # a browser drops the tab: //evil.example/x
        "/\n/evil.example/x",
        "/\r\n/evil.example/x",
        "/ /evil.example/x",
        "/\u3000/evil.example/x",  # an ideographic space
        "/\\evil.example/x",
        "/x\\..\\\\evil.example",
        "//evil.example/x",
        "https://evil.example/x",
        "evil.example",
        "",
    ],
    ids=["tab", "lf", "crlf", "space", "ideographic-space", "backslash", "inner-backslash",
         "two-slashes", "scheme", "relative", "empty"],
)  # fmt: skip
async def test_a_next_that_is_not_one_plain_path_of_this_site_goes_to_the_overview(
    client: tuple[App, Client], target: str
) -> None:
    _, c = client
    resp = await sign_in(c, next=target)
    assert resp.status == 303
    assert resp.headers["Location"] == "/"


async def test_a_plain_path_of_this_site_is_kept_as_next(client: tuple[App, Client]) -> None:
    _, c = client
    resp = await sign_in(c, next="/deliveries?state=dead&event=security-day")
    assert resp.headers["Location"] == "/deliveries?state=dead&event=security-day"


async def test_a_sign_in_form_fetched_by_another_browser_signs_nobody_in(
    client: tuple[App, Client],
) -> None:
    """Login CSRF: an attacker's page posts a form token it fetched itself (with its own
    viewer token) from the victim's browser. The token is bound to the attacker's cookie."""
    _, victim = client
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as attacker:
        async with attacker.get(victim.make_url("/")) as page:
            stolen = form_token(await page.text())
    await victim.get("/")  # the victim's browser has a sign-in cookie of its own, or none
    for jar_cleared in (False, True):
        if jar_cleared:
            victim.session.cookie_jar.clear()
        resp = await victim.post(
            "/signin",
            data={"csrf": stolen, "token": VIEWER_TOKEN, "next": "/"},
            allow_redirects=False,
        )
        assert resp.status == 403 and resp.content_type == "text/html"
        assert "不属于此浏览器" in await resp.text()
        assert SESSION_COOKIE not in resp.cookies


async def test_the_sign_in_cookie_is_httponly_and_strict(client: tuple[App, Client]) -> None:
    _, c = client
    resp = await c.get("/events")
    header = resp.headers["Set-Cookie"]
    assert header.startswith("notifier_signin=")
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header


# --- 8: each token opens one door; changing one ends its sessions ---------------------------


@pytest.mark.parametrize(
    ("values", "names"),
    [
        (
            {"calendar_token": "shared-token-1", "viewer_token": "shared-token-1"},
            ("NOTIFIER_VIEWER_TOKEN", "NOTIFIER_CALENDAR_TOKEN"),
        ),
        (
            {"admin_token": "shared-token-2", "viewer_token": "shared-token-2"},
            ("NOTIFIER_VIEWER_TOKEN", "NOTIFIER_ADMIN_TOKEN"),
        ),
    ],
)
def test_a_viewer_token_equal_to_another_token_is_a_settings_error_naming_both(
    tmp_path: Path, values: dict[str, str], names: tuple[str, str]
) -> None:
    secrets = {name: SecretStr(value) for name, value in values.items()}
    with pytest.raises(ValidationError) as caught:
        console_settings(tmp_path, **secrets)
    text = str(caught.value)
    assert all(name in text for name in names)
    assert "shared-token" not in text  # the secret itself is never echoed


async def test_changing_the_viewer_token_ends_the_viewers_sessions_not_the_admins(
    tmp_path: Path, hook_secret_env: None
) -> None:
    cookies: dict[str, str] = {}
    async with App(console_settings(tmp_path), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            for role, token in (("viewer", VIEWER_TOKEN), ("admin", ADMIN_TOKEN)):
                c.session.cookie_jar.clear()
                resp = await sign_in(c, token)
                assert resp.status == 303
                cookies[role] = resp.cookies[SESSION_COOKIE].value
    # Restarted with a new viewer token (the old one leaked, or someone left), same database.
    settings = console_settings(tmp_path, viewer_token=SecretStr("a-new-viewer-token"))
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            pages = {}
            for role, value in cookies.items():
                c.session.cookie_jar.clear()
                c.session.cookie_jar.update_cookies({SESSION_COOKIE: value})
                pages[role] = await (await c.get("/deliveries")).text()
            rows = await app.store.db.fetchall("SELECT role FROM console_sessions")
    assert 'type="password"' in pages["viewer"]  # signed out
    assert "管理员 admin" in pages["admin"] and 'type="password"' not in pages["admin"]
    assert [r[0] for r in rows] == ["admin"]  # the viewer's row went with it


# --- 10: viewers and unsubscribe tokens ----------------------------------------------------

UNSUBSCRIBE_URL = "https://notify.example.gov.cn/unsubscribe?token=SEALED-TOKEN-OF-A-RECIPIENT"


async def test_a_viewer_sees_neither_the_raw_message_nor_an_unsubscribe_token(
    client: tuple[App, Client],
) -> None:
    app, c = client
    message = (
        "Subject: =?utf-8?b?5rWL6K+V?=\r\nMessage-ID: <u@test>\r\n"
        f"List-Unsubscribe: <{UNSUBSCRIBE_URL}>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nraw body with a link\r\n"
    )
    new = dataclasses.replace(row("seed/unsub", State.FAILED), message=message)
    await app.store.enqueue([new], now=NOW)
    (row_id,) = await app.store.ids_for_keys([new.key])
    pages = {}
    for role, token in (("viewer", VIEWER_TOKEN), ("admin", ADMIN_TOKEN)):
        c.session.cookie_jar.clear()
        assert (await sign_in(c, token)).status == 303
        # An external audience's email: its preview carries the recipient's unsubscribe link.
        pages[role] = [
            await (await c.get(f"/deliveries/{row_id}")).text(),
            await (await c.get("/events/civil-code-month")).text(),
            await (await c.get("/events/civil-code-month/preview")).text(),
        ]
    delivery, event, preview = pages["viewer"]
    assert "SEALED-TOKEN" not in delivery and "raw body with a link" not in delivery
    assert "原始邮件仅管理员可见" in delivery
    assert "/unsubscribe?token=•••" in event  # the text part shows where the link goes
    for page in (event, preview):
        assert not re.search(r"/unsubscribe\?token=[^•]", page)
    admin_delivery, admin_event, _ = pages["admin"]
    assert UNSUBSCRIBE_URL in admin_delivery
    assert re.search(r"/unsubscribe\?token=[A-Za-z0-9_-]{16,}", admin_event)


# --- 15: the first run's one-time sign-in link ---------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_without_an_admin_token_the_start_prints_a_link_that_signs_in_as_admin_once(
    tmp_path: Path,
    hook_secret_env: None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(NOW)
    settings = console_settings(tmp_path, admin_token=None, viewer_token=None)
    async with App(settings, clock=clock) as app:
        runner = await start_http(app)
        try:
            port = bound_port(runner)
            printed = capsys.readouterr().out
            match = re.search(r"http://127\.0\.0\.1:(\d+)(/signin/once\?token=\S+)", printed)
            assert match, printed
            assert int(match.group(1)) == port and "仅可使用一次" in printed
            logged = [
                r for r in caplog.records if getattr(r, "action", "") == "console_signin_link"
            ]
            assert len(logged) == 1 and match.group(2) in logged[0].getMessage()
            base = f"http://127.0.0.1:{port}"
            async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as browser:
                page = await (await browser.get(base + "/")).text()
                assert SIGNIN_LINK_PATH in page  # the sign-in page says where to look
                resp = await browser.get(base + match.group(2), allow_redirects=False)
                assert resp.status == 303 and resp.headers["Location"] == "/"
                overview = await (await browser.get(base + "/")).text()
                assert "管理员 admin" in overview and 'type="password"' not in overview
            async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as other:
                again = await other.get(base + match.group(2), allow_redirects=False)
                assert again.status == 403 and "链接无效" in await again.text()
                assert SESSION_COOKIE not in again.cookies
                # A new link, opened too late.
                late = await announce_signin_link(runner.app, "0.0.0.0", port)
                assert late is not None and late.startswith(base + SIGNIN_LINK_PATH)
                clock.now = NOW + SIGNIN_LINK_SECONDS + 1
                expired = await other.get(late, allow_redirects=False)
                assert expired.status == 403
            links = await app.store.db.fetchall("SELECT COUNT(*) FROM signin_links")
            assert links[0][0] == 0  # used and expired links are deleted
        finally:
            await runner.cleanup()


async def test_with_an_admin_token_no_link_is_printed_and_none_signs_in(
    tmp_path: Path,
    hook_secret_env: None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with App(console_settings(tmp_path), clock=lambda: NOW) as app:
        runner = await start_http(app)
        try:
            assert "signin/once" not in capsys.readouterr().out
            assert not [r for r in caplog.records if "signin/once" in r.getMessage()]
            async with ClientSession() as browser:
                url = f"http://127.0.0.1:{bound_port(runner)}{SIGNIN_LINK_PATH}?token=x"
                resp = await browser.get(url, allow_redirects=False)
                assert resp.status == 403
        finally:
            await runner.cleanup()


async def test_a_database_fault_at_start_costs_the_link_not_the_service(
    tmp_path: Path, hook_secret_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}?busy_timeout=100"
    settings = console_settings(tmp_path, admin_token=None, viewer_token=None, database_url=url)
    async with App(settings, clock=lambda: NOW) as app:
        locker = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            runner = await start_http(app)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        try:
            actions = [getattr(r, "action", "") for r in caplog.records]
            assert "console_signin_link_failed" in actions
            assert "console_signin_link" not in actions
            async with ClientSession() as browser:
                ready = await browser.get(f"http://127.0.0.1:{bound_port(runner)}/healthz")
                assert ready.status == 200
        finally:
            await runner.cleanup()

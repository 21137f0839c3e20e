"""The console's safety over plain HTTP (no browser): cookies, CSRF on sign-in, the failed
sign-in limit, sign-out, headers, and keyset pagination of the ledger at the store level."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from notifier.ledger.console import ConsoleStore, decode_cursor, encode_cursor
from notifier.ledger.models import DeliveryFilter, Outcome, State
from notifier.service import App
from notifier.web import create_web_app
from notifier.web.auth import MAX_FAILED_SIGNINS, SESSION_COOKIE, SIGNIN_COOKIE
from tests.console_fixtures import (
    ADMIN_TOKEN,
    HOOK_SECRET,
    NOW,
    TZ,
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


async def test_signed_out_the_root_is_the_sign_in_page_with_a_strict_csp(
    client: tuple[App, Client],
) -> None:
    _, c = client
    resp = await c.get("/")
    body = await resp.text()
    assert resp.status == 200
    assert '<html lang="zh-CN">' in body
    assert 'type="password"' in body and "登录" in body
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # no script runs at all
    assert resp.headers["X-Frame-Options"] == "DENY"


async def test_the_session_cookie_is_signed_httponly_strict_and_expires(
    client: tuple[App, Client],
) -> None:
    _, c = client
    resp = await sign_in(c)
    assert resp.status == 303
    header = resp.headers["Set-Cookie"]
    assert header.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Max-Age=" in header
    assert "Secure" not in header  # public_url is http here
    value = resp.cookies[SESSION_COOKIE].value
    assert "." in value  # itsdangerous: id.signature
    # An altered signature is no session.
    c.session.cookie_jar.clear()
    c.session.cookie_jar.update_cookies({SESSION_COOKIE: value[:-2] + "xx"})
    assert 'type="password"' in await (await c.get("/deliveries")).text()


async def test_the_cookie_is_secure_when_the_public_url_is_https(
    tmp_path: Path, hook_secret_env: None
) -> None:
    settings = console_settings(tmp_path, public_url="https://notify.example.gov.cn")
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            page = await c.get("/")
            # The sign-in form's cookie too, and `__Host-` (no sibling subdomain can plant
            # it). The test client speaks plain HTTP, so it is sent by hand, as a browser on
            # the HTTPS address would.
            name = f"__Host-{SIGNIN_COOKIE}"
            assert "Secure" in page.headers["Set-Cookie"] and name in page.cookies
            resp = await c.post(
                "/signin",
                data={"csrf": form_token(await page.text()), "token": ADMIN_TOKEN, "next": "/"},
                headers={"Cookie": f"{name}={page.cookies[name].value}"},
                allow_redirects=False,
            )
            assert resp.status == 303
            assert "Secure" in resp.cookies[SESSION_COOKIE].output()


async def test_sign_in_without_the_form_token_gets_403_html(client: tuple[App, Client]) -> None:
    _, c = client
    resp = await c.post("/signin", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert resp.status == 403
    assert resp.content_type == "text/html"
    assert SESSION_COOKIE not in resp.cookies


async def test_failed_sign_ins_are_limited_and_audited(client: tuple[App, Client]) -> None:
    app, c = client
    for _ in range(MAX_FAILED_SIGNINS):
        resp = await sign_in(c, "wrong-token")
        assert resp.status == 401
    resp = await sign_in(c)  # the right token, but too late
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert SESSION_COOKIE not in resp.cookies
    entries = await ConsoleStore(app.store.db).audit_entries()
    failed = [e for e in entries if e.action == "sign_in_failed"]
    assert len(failed) == MAX_FAILED_SIGNINS
    assert {e.client for e in failed} == {"127.0.0.1"} and {e.role for e in failed} == {"anonymous"}


async def test_the_viewer_token_signs_in_read_only(client: tuple[App, Client]) -> None:
    app, c = client
    assert (await sign_in(c, VIEWER_TOKEN)).status == 303
    page = await (await c.get("/events/security-day")).text()
    assert "查看者 viewer" in page and "立即发送" not in page
    entries = await ConsoleStore(app.store.db).audit_entries()
    assert [(e.action, e.role) for e in entries] == [("sign_in", "viewer")]


async def test_sign_out_deletes_the_session_row(client: tuple[App, Client]) -> None:
    app, c = client
    resp = await sign_in(c)
    cookie = resp.cookies[SESSION_COOKIE].value
    page = await (await c.get("/")).text()
    resp = await c.post("/signout", data={"csrf": form_token(page)}, allow_redirects=False)
    assert resp.status == 303
    rows = await app.store.db.fetchall("SELECT COUNT(*) FROM console_sessions")
    assert rows[0][0] == 0
    c.session.cookie_jar.update_cookies({SESSION_COOKIE: cookie})
    assert 'type="password"' in await (await c.get("/")).text()


async def test_the_sign_in_address_is_a_page_too(client: tuple[App, Client]) -> None:
    _, c = client
    resp = await c.get("/signin")
    assert resp.status == 200 and 'type="password"' in await resp.text()
    await sign_in(c)
    resp = await c.get("/signin", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_sign_in_never_redirects_off_site(client: tuple[App, Client]) -> None:
    _, c = client
    resp = await sign_in(c, next="//evil.example.com/x")
    assert resp.headers["Location"] == "/"


async def test_without_an_admin_token_the_console_says_how_to_enable_it(
    tmp_path: Path, hook_secret_env: None
) -> None:
    settings = console_settings(tmp_path, admin_token=None, viewer_token=SecretStr(VIEWER_TOKEN))
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            assert "NOTIFIER_ADMIN_TOKEN" in await (await c.get("/")).text()
            resp = await c.post("/signin", data={"token": VIEWER_TOKEN}, allow_redirects=False)
            assert resp.status == 503


async def test_bad_console_input_is_an_html_4xx_never_a_500(client: tuple[App, Client]) -> None:
    _, c = client
    await sign_in(c)
    for path, status in [
        ("/deliveries?state=nope", 400),
        ("/deliveries?after=%%%", 400),
        ("/deliveries?date=2026-13-01", 400),
        ("/deliveries/99999", 404),
        ("/deliveries/abc", 404),
        ("/events/no-such-event", 404),
        ("/events/security-day?recipient=nobody@example.com", 422),
        ("/calendar?month=2026-13", 400),
        ("/calendar?month=x", 400),
    ]:
        resp = await c.get(path)
        assert resp.status == status, path
        assert resp.content_type == "text/html", path


async def test_the_deliveries_keyset_pages_visit_every_row_once_newest_first(
    client: tuple[App, Client],
) -> None:
    app, _ = client
    rows = [
        row(f"page/{i}", State.SENT if i % 3 else State.DEAD, due=NOW - 60 * (i // 2))
        for i in range(130)
    ]
    await app.store.enqueue(rows, now=NOW)
    store = ConsoleStore(app.store.db)
    seen: list[tuple[float, int]] = []
    after = None
    while True:
        page = await store.deliveries_page(DeliveryFilter(), after=after, limit=50)
        seen.extend((d.due_at, d.id) for d in page.rows)
        if page.next_cursor is None:
            break
        after = decode_cursor(page.next_cursor)
    assert len(seen) == len(set(seen)) == 132  # and the two seeded rows
    assert seen == sorted(seen, reverse=True)
    dead = await store.deliveries_page(DeliveryFilter(state=State.DEAD), after=None, limit=500)
    assert {d.state for d in dead.rows} == {State.DEAD} and len(dead.rows) == 44 + 1
    day = datetime.fromtimestamp(NOW, TZ).replace(hour=0, minute=0)
    today = await store.deliveries_page(
        DeliveryFilter(since=day.timestamp(), until=NOW - 3000), after=None, limit=500
    )
    assert today.rows and all(day.timestamp() <= d.due_at < NOW - 3000 for d in today.rows)
    nobody = DeliveryFilter(recipient="nobody@example.com")
    assert (await store.deliveries_page(nobody, after=None, limit=5)).rows == []


def test_a_cursor_is_opaque_and_a_forged_one_is_refused() -> None:
    assert decode_cursor(encode_cursor(1.5, 7)) == (1.5, 7)
    assert decode_cursor("not-a-cursor") is None
    assert decode_cursor(encode_cursor(1.5, 7)[:-3]) is None


async def signed_in(c: Client) -> str:
    """Sign in as admin; the CSRF token of the session."""
    await sign_in(c)
    return form_token(await (await c.get("/")).text())


async def test_the_config_page_names_each_error_live_after_a_reload(
    client: tuple[App, Client],
) -> None:
    app, c = client
    await signed_in(c)
    assert "配置有效" in await (await c.get("/config")).text()
    broken = app.settings.schedules_dir / "broken.yaml"
    broken.write_text("events:\n  - id: x\n    title: 坏\n    date: 13-45\n", encoding="utf-8")
    assert app.reload() is False
    page = await (await c.get("/config")).text()
    assert "仍在使用上次有效的配置" in page
    assert str(broken) in page and "events[0].date" in page
    assert "配置有误" in await (await c.get("/")).text()
    broken.unlink()
    assert app.reload() is True
    assert "配置有效" in await (await c.get("/config")).text()


async def test_the_overview_counts_todays_webhook_accepts(client: tuple[App, Client]) -> None:
    _, c = client
    await signed_in(c)
    body = '{"visitor": "张三", "org": "ACME", "date": "2026-04-02"}'
    for msg_id in ("msg_a", "msg_b", "msg_a"):  # a redelivery is not a new accept
        sig = Webhook(HOOK_SECRET).sign(msg_id, datetime.fromtimestamp(NOW, UTC), body)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(NOW)),
            "webhook-signature": sig,
            "Content-Type": "application/json",
        }
        resp = await c.post("/hooks/visit-request", data=body.encode(), headers=headers)
        assert resp.status == 202, await resp.text()
    page = await (await c.get("/")).text()
    assert re.search(r"<b>2</b><span>今日接收的 Webhook", page)
    config = await (await c.get("/config")).text()
    assert "/hooks/visit-request" in config and "fazhi@fao.example.com" in config


async def test_resend_makes_a_new_pending_row_with_the_same_message_and_audits_both(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    (dead,) = [d for d in await app.store.list_deliveries() if d.state is State.DEAD]
    resp = await c.post(f"/deliveries/{dead.id}/resend", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    new_id = int(resp.headers["Location"].split("/")[-1].split("?")[0])
    new = await app.store.get(new_id)
    old = await app.store.get(dead.id)
    assert new is not None and old is not None
    assert new.state is State.PENDING and new.message == dead.message and new.source == "manual"
    assert old.state is State.DEAD  # the ledger keeps what failed
    targets = {e.target for e in await ConsoleStore(app.store.db).audit_entries()}
    assert {f"delivery:{dead.id}", f"delivery:{new_id}"} <= targets
    # A sent row can be neither retried nor resent.
    (sent,) = [d for d in await app.store.list_deliveries() if d.state is State.SENT]
    for action in ("retry", "resend"):
        resp = await c.post(f"/deliveries/{sent.id}/{action}", data={"csrf": csrf})
        assert resp.status == 409


async def test_a_delivery_page_lists_each_failed_attempt_with_the_servers_answer(
    client: tuple[App, Client],
) -> None:
    app, c = client
    await signed_in(c)
    await app.store.enqueue([row("test/attempts", State.PENDING)], now=NOW)
    (first,) = await app.store.claim(now=NOW, limit=10, lease_seconds=30)
    await app.store.record(
        [Outcome(first.id, State.PENDING, NOW + 1, error="451 4.7.1 稍后再试 try again later")]
    )
    (again,) = [
        d
        for d in await app.store.claim(now=NOW + 3600, limit=10, lease_seconds=30)
        if d.id == first.id
    ]
    await app.store.record([Outcome(again.id, State.DEAD, NOW + 2, error="gave up: 550 5.1.1")])
    page = await (await c.get(f"/deliveries/{first.id}")).text()
    attempts = page[page.index("失败的尝试") : page.index("操作记录")]
    assert attempts.index("451 4.7.1 稍后再试") < attempts.index("gave up: 550 5.1.1")
    other = await (await c.get(f"/deliveries/{first.id + 1000}")).text()
    assert "451 4.7.1" not in other

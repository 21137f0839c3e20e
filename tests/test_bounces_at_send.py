"""Bounces at send time: a 5xx for the address ends the row `bounced` at once and suppresses
the address; outreach skips suppressed addresses, staff mail does not."""

from __future__ import annotations

import re
from collections.abc import Callable

from aiohttp.test_utils import TestClient, TestServer

from notifier.ledger.models import State
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import Faults, SmtpServer
from tests.test_bad_recipients import sign_in

ADMIN = {"Authorization": "Bearer admin-token-for-tests"}

GONE = "left@trade1.example.com"
SCHEDULE = f"""\
audiences:
  staff: [{{email: {GONE}, name: 已离职}}, {{email: fazhi@fao.example.com, name: 法治处}}]
  enterprises:
    external: true
    members: [{{email: {GONE}, name: 星海贸易}}, {{email: biz@trade2.example.com, name: 远洋}}]
events:
  - id: outreach
    title: APEC商务旅行卡政策解读会
    date: "2027-03-18"
    audience: enterprises
    reminders: [{{on: start}}]
  - id: staff-only
    title: 内部提醒
    date: "2027-03-18"
    reminders: [{{on: start}}]
"""


async def test_a_550_on_rcpt_ends_the_row_bounced_at_once_and_suppresses_the_address(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server(Faults(reject={GONE}))
    settings = make_settings(smtp=smtp_settings(server))
    write_schedule(settings.schedules_dir, SCHEDULE)
    async with App(settings) as app:
        await app.outbox.send_now("outreach", now=app.clock())
        stats = await app.run_until_idle()
        (row,) = await app.store.list_deliveries(state=State.BOUNCED)
        (entry,) = await app.suppressions.entries()
    assert (stats.sent, stats.bounced, stats.retried) == (1, 1, 0)
    assert row.recipient == GONE and row.attempts == 1
    assert row.last_error == "550 5.1.1 no such user"
    assert (entry.address, entry.delivery_id, entry.source) == (GONE, row.id, "smtp")
    assert "550 5.1.1 no such user" in entry.excerpt
    assert entry.first_at == entry.last_at


async def test_outreach_skips_a_suppressed_address_and_staff_mail_still_goes(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    settings = make_settings(smtp=smtp_settings(server))
    write_schedule(settings.schedules_dir, SCHEDULE)
    async with App(settings) as app:
        await app.suppressions.suppress(
            GONE.upper(), reason="550 5.1.1", excerpt="...", source="smtp", delivery_id=None,
            now=app.clock(),
        )  # fmt: skip
        await app.outbox.send_now("outreach", now=app.clock())
        await app.outbox.send_now("staff-only", now=app.clock())
        stats = await app.run_until_idle()
        (skipped,) = await app.store.list_deliveries(state=State.SKIPPED)
    assert (stats.sent, stats.skipped) == (3, 1)
    assert skipped.recipient == GONE and skipped.event_id == "outreach"
    assert skipped.last_error == "address suppressed (bounced): 550 5.1.1"
    to = [str(m["To"]) for m in server.sink.messages]
    assert sum(GONE in t for t in to) == 1  # the staff reminder only


async def test_a_relay_refusal_is_a_failure_not_a_bounce(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server(Faults(reject={GONE}, reject_reply="554 5.7.1 Relay access denied"))
    settings = make_settings(smtp=smtp_settings(server))
    write_schedule(settings.schedules_dir, SCHEDULE)
    async with App(settings) as app:
        await app.outbox.send_now("outreach", now=app.clock())
        await app.run_until_idle()
        failed = await app.store.list_deliveries(state=State.FAILED)
        entries = await app.suppressions.entries()
    assert [r.recipient for r in failed] == [GONE]
    assert entries == []


async def test_the_console_lists_a_suppressed_address_and_an_admin_takes_it_off_audited(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server(Faults(reject={GONE}))
    settings = make_settings(smtp=smtp_settings(server))
    write_schedule(settings.schedules_dir, SCHEDULE)
    async with App(settings) as app:
        await app.outbox.send_now("outreach", now=app.clock())
        await app.run_until_idle()
        async with TestClient(TestServer(create_web_app(app))) as client:
            resp = await client.post("/api/preview", json={"event": "outreach"}, headers=ADMIN)
            preview = await resp.json()
            await sign_in(client)
            confirm = await (await client.get("/events/outreach/send")).text()
            audiences = await (await client.get("/audiences")).text()
            page = await (await client.get("/suppressions")).text()
            token = re.search(r'name="csrf" value="([^"]+)"', page)
            assert token is not None
            removed = await client.post(
                "/suppressions/remove",
                data={"csrf": token.group(1), "address": GONE},
                allow_redirects=False,
            )
            unknown = await client.post(
                "/suppressions/remove",
                data={"csrf": token.group(1), "address": "nobody@example.com"},
                allow_redirects=False,
            )
            after = await app.suppressions.entries()
            audit = await app.console.audit_entries(limit=5)
    assert preview["suppressed"] == 1
    assert '<b class="suppressed-count">1</b>' in confirm
    assert 'href="/suppressions"' in audiences
    assert GONE in page and "550 5.1.1 no such user" in page
    assert removed.status == 303 and after == []
    assert unknown.status == 404
    assert any(a.action == "unsuppress" and a.target == f"email:{GONE}" for a in audit)


async def test_a_staff_address_that_bounced_is_named_in_the_admins_digest_rows(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server(Faults(reject={GONE}))
    settings = make_settings(smtp=smtp_settings(server))
    write_schedule(settings.schedules_dir, SCHEDULE)
    async with App(settings) as app:
        await app.outbox.send_now("staff-only", now=app.clock())
        await app.run_until_idle()
        ended = await app.store.ended_badly(since=0, until=app.clock() + 1)
    assert [(r.state, r.recipient) for r in ended] == [("bounced", GONE)]

"""Outreach hygiene: outside audiences can unsubscribe; staff reminders carry no such link."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from notifier.compose.tokens import unsubscribe_token, verify_unsubscribe_token
from notifier.ledger.models import State
from notifier.service import App
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import SmtpServer

OUTREACH = """\
audiences:
  staff: [{email: fazhi@fao.example.com, name: 法治处}]
  enterprises: {csv: enterprises.csv, external: true}
events:
  - id: apec-card
    title: APEC商务旅行卡政策解读会
    date: "2027-03-18"
    audience: enterprises
    reminders: [{before: 7 days}]
  - id: staff-only
    title: 内部提醒
    date: "2027-03-18"
    reminders: [{on: start}]
"""


def outreach_settings(make_settings: MakeSettings, tmp_path: Path, rows: int = 3) -> MakeSettings:
    settings = make_settings()
    write_schedule(settings.schedules_dir, OUTREACH)
    lines = ["email,name,district"] + [
        f"biz{i}@trade{i}.example.com,星海贸易{i}号公司,思明区" for i in range(rows)
    ]
    (settings.schedules_dir / "enterprises.csv").write_text("\n".join(lines) + "\n", "utf-8")
    return make_settings


async def test_outreach_carries_rfc8058_headers_and_staff_mail_does_not(
    make_settings: MakeSettings, tmp_path: Path, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    outreach_settings(make_settings, tmp_path)
    async with App(make_settings(smtp=smtp_settings(server))) as app:
        await app.outbox.send_now("apec-card", now=app.clock())
        await app.outbox.send_now("staff-only", now=app.clock())
        await app.worker.run_until_idle()
    by_to = {str(m["To"]).split("<")[-1].rstrip(">"): m for m in server.sink.messages}
    outside = by_to["biz0@trade0.example.com"]
    assert str(outside["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    url = str(outside["List-Unsubscribe"]).strip("<>")
    assert "/unsubscribe?token=" in url
    assert "biz0" not in url and "trade0" not in url and "%40" not in url  # opaque, not in clear
    token = url.partition("token=")[2]
    assert verify_unsubscribe_token(b"unsubscribe-secret", token) == "biz0@trade0.example.com"
    assert outside["Auto-Submitted"] is None
    inside = by_to["fazhi@fao.example.com"]
    assert inside["List-Unsubscribe"] is None
    assert inside["Auto-Submitted"] == "auto-generated"


async def test_an_unsubscribed_address_is_skipped_and_the_ledger_says_so(
    make_settings: MakeSettings, tmp_path: Path, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    outreach_settings(make_settings, tmp_path)
    async with App(make_settings(smtp=smtp_settings(server))) as app:
        await app.store.unsubscribe("BIZ1@trade1.example.com", now=app.clock(), source="test")
        await app.outbox.send_now("apec-card", now=app.clock())
        stats = await app.worker.run_until_idle()
        skipped = await app.store.list_deliveries(state=State.SKIPPED)
    assert (stats.sent, stats.skipped) == (2, 1)
    assert [s.recipient for s in skipped] == ["biz1@trade1.example.com"]
    assert skipped[0].last_error == "recipient unsubscribed"
    assert "biz1@trade1.example.com" not in " ".join(server.sink.recipients())


def test_unsubscribe_tokens_verify_only_with_our_secret() -> None:
    token = unsubscribe_token(b"k1", "Biz@Example.com")
    assert verify_unsubscribe_token(b"k1", token) == "biz@example.com"
    assert verify_unsubscribe_token(b"k2", token) is None
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert verify_unsubscribe_token(b"k1", flipped) is None
    assert verify_unsubscribe_token(b"k1", "garbage") is None


async def test_the_rate_limit_spaces_out_sends(
    make_settings: MakeSettings, tmp_path: Path, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    outreach_settings(make_settings, tmp_path, rows=30)
    settings = make_settings(smtp=smtp_settings(server, rate_limit=20))
    async with App(settings) as app:
        await app.outbox.send_now("apec-card", now=app.clock())
        started = time.monotonic()
        stats = await app.worker.run_until_idle()
        elapsed = time.monotonic() - started
    assert stats.sent == 30
    # 20/s with a burst of 20: the last 10 need about half a second more.
    assert elapsed >= 0.4

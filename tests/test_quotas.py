"""A mail account's real limits: shared quotas per window and pauses after a throttle reply."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from notifier.channels.base import TransportError
from notifier.config import Rate, parse_limits
from notifier.delivery.quotas import is_daily, is_throttle, next_midnight, windows
from notifier.ledger.models import State
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import Faults, SmtpServer
from tests.test_bad_recipients import sign_in

SHANGHAI = ZoneInfo("Asia/Shanghai")


def staff_schedule(count: int) -> str:
    members = ", ".join(f"{{email: s{i}@fao.example.com, name: 同事{i}}}" for i in range(count))
    return f"""\
audiences:
  staff: [{members}]
events:
  - id: drill
    title: 消防演练
    date: "2027-03-18"
    reminders: [{{on: start}}]
"""


async def until_all_sent(app: App, count: int, deadline: float) -> None:
    """Run bursts until `count` rows are sent: rows waiting for a window come due later."""
    end = time.monotonic() + deadline
    while len(await app.store.list_deliveries(state=State.SENT)) < count:
        assert time.monotonic() < end, "rows still unsent at the deadline"
        await app.run_until_idle()
        await asyncio.sleep(0.05)


def test_limits_read_as_rates_and_a_bad_one_names_itself() -> None:
    assert parse_limits("30/minute, 500/hour,2000/day") == (
        Rate(30, "minute"),
        Rate(500, "hour"),
        Rate(2000, "day"),
    )
    with pytest.raises(ValueError, match="'10/week' is not a limit"):
        parse_limits("30/minute, 10/week")
    with pytest.raises(ValueError, match="a second limit per minute"):
        parse_limits("30/minute, 40/minute")


def test_a_day_window_is_the_local_day() -> None:
    now = datetime(2027, 3, 18, 23, 30, tzinfo=SHANGHAI).timestamp()
    minute, day = windows([Rate(30, "minute"), Rate(500, "day")], now, SHANGHAI)
    assert (minute.start, minute.end) == (now, now + 60)
    assert day.start == datetime(2027, 3, 18, tzinfo=SHANGHAI).timestamp()
    assert day.end == datetime(2027, 3, 19, tzinfo=SHANGHAI).timestamp()
    assert next_midnight(now, SHANGHAI) == day.end


@pytest.mark.parametrize(
    ("reply", "throttle", "daily"),
    [
        ("451 4.7.1 too frequently sending, please try again later", True, False),
        ("550 Reject by behaviour spamANTISPAM_BAT(1234) - please try later", True, False),
        ("421 4.7.0 Error: ip frequency limited", True, False),
        ("554 5.7.1 发送频率过快，请稍后再试", True, False),
        ("550 您今日的发信量已超过限制 daily sending limit exceeded", True, True),
        ("451 4.3.0 try again later", False, False),  # greylisting: retry the one message
        ("550 5.1.1 no such user", False, False),
        ("250 ok too frequently", False, False),
    ],
)
def test_throttle_replies_are_told_from_a_failed_message(
    reply: str, throttle: bool, daily: bool
) -> None:
    error = TransportError(reply, code=reply[:3])
    assert is_throttle(error) is throttle
    assert (throttle and is_daily(error)) is daily


async def test_a_row_over_the_days_quota_waits_for_the_next_day_without_spending_an_attempt(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    settings = make_settings(smtp=smtp_settings(server, limits="3/day"))
    write_schedule(settings.schedules_dir, staff_schedule(5))
    async with App(settings) as app:
        await app.outbox.send_now("drill", now=app.clock())
        stats = await app.run_until_idle()
        waiting = sorted(await app.store.list_deliveries(state=State.PENDING), key=lambda r: r.id)
        notes = await app.limits.waiting([r.id for r in waiting])
    assert (stats.sent, stats.deferred, stats.dead, stats.retried) == (3, 2, 0, 0)
    assert len(server.sink.messages) == 3
    midnight = next_midnight(time.time(), settings.tz)
    assert [(r.attempts, r.due_at) for r in waiting] == [(0, midnight), (0, midnight)]
    assert {n.until for n in notes.values()} == {midnight}
    assert all("3/day" in n.reason for n in notes.values())

    # In order: the first rows went today, the last ones wait.
    assert [r.recipient for r in waiting] == ["s3@fao.example.com", "s4@fao.example.com"]

    tomorrow = App(settings, clock=lambda: time.time() + 86400)
    async with tomorrow:
        stats = await tomorrow.run_until_idle()
    assert stats.sent == 2
    sent_to = {str(m["To"]).split("<")[-1].rstrip(">") for m in server.sink.messages[3:]}
    assert sent_to == {r.recipient for r in waiting}  # the campaign simply goes on


@pytest.mark.postgres
async def test_three_instances_on_postgresql_never_send_more_than_the_account_allows(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer], pg_url: str
) -> None:
    server = smtp_server()
    settings = make_settings(database_url=pg_url, smtp=smtp_settings(server, limits="7/day"))
    write_schedule(settings.schedules_dir, staff_schedule(20))
    apps = [App(settings) for _ in range(3)]
    for app in apps:
        await app.__aenter__()
    try:
        await apps[0].outbox.send_now("drill", now=time.time())
        results = await asyncio.gather(*(app.run_until_idle() for app in apps))
        pending = await apps[0].store.list_deliveries(state=State.PENDING)
    finally:
        for app in apps:
            await app.__aexit__(None, None, None)
    assert len(server.sink.messages) == 7
    assert sum(r.sent for r in results) == 7
    assert len(pending) == 13 and all(r.attempts == 0 for r in pending)


async def test_a_throttle_reply_pauses_the_account_and_burns_no_attempt(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server(Faults(throttle_after=2, throttle_window=1.0))
    settings = make_settings(smtp=smtp_settings(server, pause_seconds=0.2, pool_size=2))
    write_schedule(settings.schedules_dir, staff_schedule(6))
    async with App(settings) as app:
        await app.outbox.send_now("drill", now=app.clock())
        await until_all_sent(app, 6, deadline=20)
        rows = await app.store.list_deliveries()
        pause = await app.limits.last_pause("email")
    assert server.sink.injected["throttle"] >= 1
    assert len(server.sink.messages) == 6 and server.sink.duplicates() == 0
    assert [r.attempts for r in rows] == [1] * 6  # the throttled tries were not attempts
    assert pause is not None and "too frequently sending" in pause.reason


async def test_a_waiting_row_shows_when_it_goes_and_why_in_the_api_and_the_console(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    settings = make_settings(smtp=smtp_settings(server, limits="1/day"))
    write_schedule(settings.schedules_dir, staff_schedule(2))
    admin = {"Authorization": "Bearer admin-token-for-tests"}
    async with App(settings) as app:
        await app.outbox.send_now("drill", now=app.clock())
        await app.run_until_idle()
        async with TestClient(TestServer(create_web_app(app))) as client:
            resp = await client.get("/api/deliveries?state=pending", headers=admin)
            (row,) = (await resp.json())["deliveries"]
            await sign_in(client)
            html = await (await client.get(f"/deliveries/{row['id']}")).text()
            listing = await (await client.get("/deliveries?state=pending")).text()
    midnight = datetime.fromtimestamp(next_midnight(time.time(), settings.tz), settings.tz)
    assert row["attempts"] == 0
    assert row["waiting"]["reason"] == "等待配额 waiting for quota 1/day"
    assert datetime.fromisoformat(row["waiting"]["until"]) == midnight
    assert "等待配额 waiting for quota 1/day" in html
    assert midnight.strftime("%Y-%m-%d %H:%M:%S") in html
    assert f"waits until</span> {midnight.strftime('%m-%d %H:%M')}" in listing

"""The service end to end: on time, once, across restarts and downtime."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from notifier.ledger.models import State
from notifier.planning import WATERMARK
from notifier.service import App
from tests.conftest import MakeSettings, write_schedule
from tests.waiting import wait_for

TZ = ZoneInfo("Asia/Shanghai")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()


async def states(app: App) -> dict[str, State]:
    rows = await app.store.list_deliveries(limit=1000)
    return {f"{r.reminder_id}/{r.recipient}": r.state for r in rows}


async def test_a_send_within_grace_is_caught_up_and_older_ones_are_missed(
    make_settings: MakeSettings,
) -> None:
    # 2026-04-15 11:00: the 09:00 "on start" send is 2 h late (within 24 h grace);
    # before-3wd (04-10) and before-10d (04-03, moved off Qingming) are days late.
    clock = [at("2026-04-15T11:00")]
    async with App(make_settings(), clock=lambda: clock[0]) as app:
        await app.store.set_meta(WATERMARK, repr(at("2026-04-01T00:00")))
        await app.prepare()
        got = await states(app)
        await app.worker.run_until_idle()
        after = await states(app)
    assert got == {
        "on-start/fazhi@fao.example.com": State.PENDING,
        "on-start/office@fao.example.com": State.PENDING,
        "before-3wd/fazhi@fao.example.com": State.MISSED,
        "before-3wd/office@fao.example.com": State.MISSED,
        "before-10d/fazhi@fao.example.com": State.MISSED,
        "before-10d/office@fao.example.com": State.MISSED,
    }
    assert after["on-start/fazhi@fao.example.com"] is State.SENT
    assert after["before-10d/fazhi@fao.example.com"] is State.MISSED


async def test_grace_is_settable_per_event(make_settings: MakeSettings, tmp_path: Path) -> None:
    settings = make_settings()
    write_schedule(
        settings.schedules_dir,
        """\
        audiences:
          staff: [{email: a@example.com, name: 甲}]
        events:
          - {id: short, title: 短, date: "04-15", grace: 1h, reminders: [{on: start}]}
          - {id: long, title: 长, date: "04-15", grace: 3 days, reminders: [{before: 1 day}]}
        """,
    )
    clock = [at("2026-04-15T11:00")]
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.store.set_meta(WATERMARK, repr(at("2026-04-10T00:00")))
        await app.prepare()
        got = {r.event_id: r.state for r in await app.store.list_deliveries()}
    assert got == {"short": State.MISSED, "long": State.PENDING}


async def test_a_restart_sends_nothing_twice(make_settings: MakeSettings) -> None:
    settings = make_settings()
    clock = [at("2026-04-15T09:00:30")]
    for _ in range(3):
        async with App(settings, clock=lambda: clock[0]) as app:
            await app.prepare()
            await app.worker.run_until_idle()
        clock[0] += 60
    async with App(settings, clock=lambda: clock[0]) as app:
        rows = await app.store.list_deliveries()
    assert [r.state for r in rows] == [State.SENT, State.SENT]
    assert len(list((settings.mail_drop_dir / "new").iterdir())) == 2


async def test_rows_are_prepared_ahead_and_not_sent_before_their_time(
    make_settings: MakeSettings,
) -> None:
    clock = [at("2026-04-15T08:57")]  # within the 5-minute prepare window
    async with App(make_settings(), clock=lambda: clock[0]) as app:
        await app.prepare()
        early = await app.worker.run_until_idle()
        pending = await app.store.list_deliveries(state=State.PENDING)
        clock[0] = at("2026-04-15T09:00")
        on_time = await app.worker.run_until_idle()
    assert early.sent == 0 and len(pending) == 2
    assert all(r.due_at == at("2026-04-15T09:00") for r in pending)
    assert on_time.sent == 2


async def test_the_timer_fires_a_send_due_in_a_fraction_of_a_second(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    target = datetime.now(TZ) + timedelta(seconds=1)
    target = target.replace(microsecond=0)  # 0..1 s ahead, on a whole second
    settings = make_settings(prepare_ahead=timedelta(0))
    write_schedule(
        settings.schedules_dir,
        f"""\
        audiences:
          staff: [{{email: a@example.com, name: 甲}}]
        events:
          - id: soon
            title: 即将开始
            date: "{target.date().isoformat()}"
            send_at: "{target:%H:%M:%S}"
            workdays: ignore
            reminders: [{{on: start}}]
        """,
    )
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    ready = asyncio.Event()
    async with App(settings) as app:
        task = asyncio.create_task(app.run(stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 5)
        outbox = settings.mail_drop_dir / "new"
        await wait_for(lambda: outbox.exists() and any(outbox.iterdir()))
        arrived = time.time()
        stop.set()
        await asyncio.wait_for(task, 10)
        rows = await app.store.list_deliveries()
    assert [r.state for r in rows] == [State.SENT]
    assert arrived >= target.timestamp()
    assert arrived - target.timestamp() < 1.0
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert "timer_set" in actions and "started" in actions and "stopped" in actions


async def test_run_logs_the_next_planned_sends(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    ready = asyncio.Event()
    async with App(make_settings()) as app:
        task = asyncio.create_task(app.run(stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 10)
    planned = [r.getMessage() for r in caplog.records if getattr(r, "action", None) == "planned"]
    assert planned and all("全民国家安全教育日" in line for line in planned)


async def test_sigterm_style_stop_leaves_nothing_sending(make_settings: MakeSettings) -> None:
    settings = make_settings()
    stop = asyncio.Event()
    ready = asyncio.Event()
    async with App(settings) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        task = asyncio.create_task(app.run(stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 10)
        sending = await app.store.list_deliveries(state=State.SENDING)
    assert sending == []

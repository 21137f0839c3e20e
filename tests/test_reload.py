"""Hot reload: a good change applies without restart; a bad one is rejected whole."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from notifier.config import HttpSettings
from notifier.ledger.models import State
from notifier.service import App
from tests.conftest import SCHEDULE, MakeSettings, write_schedule
from tests.waiting import wait_for

TZ = ZoneInfo("Asia/Shanghai")


def soon_event(event_id: str, seconds: float) -> str:
    target = (datetime.now(TZ) + timedelta(seconds=seconds)).replace(microsecond=0)
    return f"""\
    events:
      - id: {event_id}
        title: 临时通知
        date: "{target.date().isoformat()}"
        send_at: "{target:%H:%M:%S}"
        workdays: ignore
        reminders: [{{on: start}}]
    """


async def test_a_valid_change_is_applied_without_restart(make_settings: MakeSettings) -> None:
    settings = make_settings(watch=True, http=HttpSettings(enabled=False))
    stop, ready = asyncio.Event(), asyncio.Event()
    async with App(settings) as app:
        task = asyncio.create_task(app.run(stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 5)
        assert "new-event" not in app.schedule.events
        write_schedule(settings.schedules_dir, soon_event("new-event", 2.5), name="new.yaml")
        await wait_for(lambda: "new-event" in app.schedule.events)
        drop = settings.mail_drop_dir / "new"
        await wait_for(lambda: drop.exists() and len(list(drop.iterdir())) == 2)
        stop.set()
        await asyncio.wait_for(task, 10)
        rows = await app.store.list_deliveries()
    assert {(r.event_id, r.state) for r in rows} == {("new-event", State.SENT)}


async def test_an_invalid_change_is_rejected_and_the_last_good_config_kept(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(watch=True, http=HttpSettings(enabled=False))
    stop, ready = asyncio.Event(), asyncio.Event()
    async with App(settings) as app:
        task = asyncio.create_task(app.run(stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 5)
        broken = SCHEDULE.replace("before: 10 days", "before: 7x")
        write_schedule(settings.schedules_dir, broken)
        await wait_for(lambda: bool(app.config_errors))
        assert "security-day" in app.schedule.events  # still the last good one
        assert any("'7x' is not a duration" in e for e in app.config_errors)
        write_schedule(settings.schedules_dir, SCHEDULE)
        await wait_for(lambda: not app.config_errors)
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_removed_events_stop_and_prepared_rows_are_not_changed(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    write_schedule(settings.schedules_dir, soon_event("temp", 3600), name="temp.yaml")
    async with App(settings) as app:
        assert app.reload()
        assert "temp" in app.schedule.events
        (settings.schedules_dir / "temp.yaml").unlink()
        assert app.reload()
        assert "temp" not in app.schedule.events
        now = datetime.now(TZ)
        assert all(p.event.id != "temp" for p in app.upcoming(now, now + timedelta(days=1)))

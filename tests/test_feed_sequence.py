"""The feeds follow changes: each event's SEQUENCE goes up when it changes, kept in the ledger
across restarts and instances; the workday feed shows 休 and 班; both parse in an iCalendar
parser other than the one that writes them (`ical`)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from ical.calendar import Calendar
from ical.calendar_stream import IcsCalendarStream

from notifier.ledger.store import Store
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import SCHEDULE, MakeSettings, write_schedule
from tests.conftest_db import open_store
from tests.test_web import NOW, TZ

TOKEN = {"token": "calendar-token-for-tests"}
# A key date in 2027, a year without installed data: its "3 workdays before" is provisional.
SCHEDULE_2027 = """\
audiences:
  staff: [{email: a@example.com, name: 甲}]
events:
  - id: report
    title: 年度报告报送
    date: "2027-02-10"
    reminders:
      - before: 3个工作日
"""
TABLE_2027 = """\
holidays:
  "2027":
    off: ["2027-01-01..2027-01-03", "2027-02-05..2027-02-11"]
    work: ["2027-02-20"]
"""


async def fetch(app: App, path: str = "/calendar.ics") -> Calendar:
    """The feed as served, parsed by `ical` (strict: an invalid feed raises)."""
    async with TestClient(TestServer(create_web_app(app))) as client:
        resp = await client.get(path, params=TOKEN)
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/calendar"
        return IcsCalendarStream.calendar_from_ics(await resp.text())


def by_uid(cal: Calendar) -> dict[str, Any]:
    return {event.uid: event for event in cal.events}


async def test_an_edited_title_raises_the_sequence_once_and_it_survives_a_restart(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    uid = "security-day-2026-04-15@notifier"
    async with App(settings, clock=lambda: NOW) as app:
        first = by_uid(await fetch(app))[uid]
        assert (first.summary, first.sequence) == ("全民国家安全教育日", 0)
        assert by_uid(await fetch(app))[uid].sequence == 0  # nothing changed: no bump
    write_schedule(settings.schedules_dir, SCHEDULE.replace("全民国家安全教育日", "国家安全教育日"))
    async with App(settings, clock=lambda: NOW + 60) as app:
        edited = by_uid(await fetch(app))[uid]
        assert (edited.summary, edited.sequence) == ("国家安全教育日", 1)
        assert edited.last_modified is not None
        assert by_uid(await fetch(app))[uid].sequence == 1
    async with App(settings, clock=lambda: NOW + 120) as app:  # a restart: kept
        assert by_uid(await fetch(app))[uid].sequence == 1


async def test_an_imported_table_drops_the_provisional_mark_and_raises_the_sequence(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    write_schedule(settings.schedules_dir, SCHEDULE_2027)
    now = datetime(2026, 12, 20, 9, tzinfo=TZ).timestamp()
    uid = "report-2027-02-10@notifier"
    async with App(settings, clock=lambda: now) as app:
        before = by_uid(await fetch(app))[uid]
        assert (before.summary, before.sequence) == ("年度报告报送（暂定）", 0)
        workdays = by_uid(await fetch(app, "/calendar/workdays.ics"))
        spring = workdays["2027-spring-festival-off@notifier-workdays"]
        assert (spring.summary, spring.sequence) == ("春节（休）（暂定）", 0)
    write_schedule(settings.schedules_dir, TABLE_2027, "holidays-2027.yaml")
    async with App(settings, clock=lambda: now + 60) as app:
        after = by_uid(await fetch(app))[uid]
        assert (after.summary, after.sequence) == ("年度报告报送", 1)
        assert "2027-02-02 09:00 → staff" in after.description  # moved off 春节 (02-05..11)
        workdays = by_uid(await fetch(app, "/calendar/workdays.ics"))
        spring = workdays["2027-spring-festival-off@notifier-workdays"]
        assert (spring.summary, spring.sequence) == ("春节（休）", 1)
        assert (spring.dtstart, spring.dtend) == (date(2027, 2, 5), date(2027, 2, 12))
        assert "holidays-2027.yaml" in spring.description
        assert workdays["2027-02-20-work@notifier-workdays"].summary == "春节调休（班）"


async def test_the_workday_feed_shows_days_off_and_make_up_workdays_naming_the_notice(
    make_settings: MakeSettings,
) -> None:
    async with App(make_settings(), clock=lambda: NOW) as app:
        events = by_uid(await fetch(app, "/calendar/workdays.ics"))
    national = events["2026-national-day-off@notifier-workdays"]
    assert national.summary == "国庆节（休）"
    assert (national.dtstart, national.dtend) == (date(2026, 10, 1), date(2026, 10, 8))
    assert "国务院办公厅关于2026年部分节假日安排的通知" in national.description
    assert "chinese-calendar 1." in national.description
    makeup = events["2026-02-28-work@notifier-workdays"]
    assert (makeup.summary, makeup.dtstart) == ("春节调休（班）", date(2026, 2, 28))
    # 2027: the statutory holidays only, marked provisional.
    new_year = events["2027-new-year-off@notifier-workdays"]
    assert new_year.summary == "元旦（休）（暂定）"
    assert "尚未公布" in new_year.description
    assert not [e for e in events.values() if e.dtstart.year == 2027 and "（班）" in e.summary]


async def test_the_workday_feed_needs_the_calendar_token(make_settings: MakeSettings) -> None:
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            resp = await client.get(
                "/calendar/workdays.ics", params={"token": "admin-token-for-tests"}
            )
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthorized"


async def test_two_instances_serving_one_change_bump_its_sequence_once(db_url: str) -> None:
    async with open_store(db_url) as first, open_store(db_url) as second:
        assert await first.ical_sequences({"a@x": "v1", "b@x": "v1"}, now=1.0) == {
            "a@x": (0, 1.0),
            "b@x": (0, 1.0),
        }
        changed = {"a@x": "v2", "b@x": "v1"}
        results = await asyncio.gather(
            *(store.ical_sequences(changed, now=2.0) for store in (first, second, first, second))
        )
        assert all(r == {"a@x": (1, 2.0), "b@x": (0, 1.0)} for r in results), results
        assert await second.ical_sequences({"a@x": "v3"}, now=3.0) == {"a@x": (2, 3.0)}


async def test_an_unchanged_feed_writes_nothing(store: Store) -> None:
    await store.ical_sequences({"a@x": "v1"}, now=1.0)
    # The same digest later: the stored change time stays (nothing was rewritten).
    assert await store.ical_sequences({"a@x": "v1"}, now=5.0) == {"a@x": (0, 1.0)}

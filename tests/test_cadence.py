"""`every:` campaigns: one send per day of a rhythm through a span, on real 2026 holidays."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from email import message_from_bytes
from email.policy import default
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.dates.cadence import Cadence, every_days, parse_cadence
from notifier.dates.rules import Occurrence
from notifier.dates.workdays import WorkCalendar, WorkdayPolicy, parse_holiday_table
from notifier.errors import ConfigError
from notifier.schedule.load import load_schedule
from notifier.schedule.planner import plan
from notifier.service import App
from tests.conftest import MakeSettings, write_schedule

D = date.fromisoformat
TZ = ZoneInfo("Asia/Shanghai")
# Official data through 2026; for 2027 a made-up table (元旦 01-01..01-03 off, Sunday 01-10 a
# make-up workday) so that spans crossing the year end meet a holiday on both sides.
CALENDAR = WorkCalendar(
    *parse_holiday_table({"2027": {"off": ["2027-01-01..2027-01-03"], "work": ["2027-01-10"]}})
)
WORKDAY, DAY, WEEK = Cadence("workday"), Cadence("days", 1), Cadence("days", 7)


def days(first: str, last: str, cadence: Cadence, policy: WorkdayPolicy) -> list[str]:
    found = every_days(Occurrence(D(first), D(last)), cadence, policy, CALENDAR)
    return [d.isoformat()[5:] for d in found]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("day", DAY),
        ("每天", DAY),
        ("workday", WORKDAY),
        ("每个工作日", WORKDAY),
        ("week", WEEK),
        ("每周", WEEK),
        ("3 days", Cadence("days", 3)),
        ("3天", Cadence("days", 3)),
        ("每3天", Cadence("days", 3)),
        ("2 weeks", Cadence("days", 14)),
    ],
)
def test_every_form_of_a_cadence_is_read(text: str, expected: Cadence) -> None:
    assert parse_cadence(text) == expected


@pytest.mark.parametrize("text", ["", "often", "0 days", "-2 days", "3x", 3, None])
def test_a_bad_cadence_is_refused(text: object) -> None:
    with pytest.raises(ValueError, match="is not a cadence"):
        parse_cadence(text)


def test_constitution_week_every_workday_and_every_day() -> None:
    # 2026-12-01 (Tue) .. 12-07 (Mon): the weekend 12-05/06 has no workday.
    assert days("2026-12-01", "2026-12-07", WORKDAY, "previous") == [
        "12-01", "12-02", "12-03", "12-04", "12-07",
    ]  # fmt: skip
    # every day, moved back: Saturday and Sunday land on Friday, and are one send there.
    assert days("2026-12-01", "2026-12-07", DAY, "previous") == [
        "12-01", "12-02", "12-03", "12-04", "12-07",
    ]  # fmt: skip
    assert len(days("2026-12-01", "2026-12-07", DAY, "ignore")) == 7


def test_a_span_across_a_month_end_and_national_day() -> None:
    # 09-28 (Mon) .. 10-12 (Mon): 10-01..10-07 off, Saturday 10-10 a make-up workday.
    assert days("2026-09-28", "2026-10-12", WORKDAY, "previous") == [
        "09-28", "09-29", "09-30", "10-08", "10-09", "10-10", "10-12",
    ]  # fmt: skip
    # 09-28, 10-05 (off -> back to 09-30), 10-12
    assert days("2026-09-28", "2026-10-12", WEEK, "previous") == ["09-28", "09-30", "10-12"]
    # 09-28, 10-01/04/07 (all off -> forward to 10-08, one send), 10-10 (make-up Saturday)
    assert days("2026-09-28", "2026-10-12", Cadence("days", 3), "next") == [
        "09-28", "10-08", "10-10",
    ]  # fmt: skip


def test_a_span_across_the_year_end_and_new_years_day() -> None:
    assert days("2026-12-28", "2027-01-11", WORKDAY, "next") == [
        "12-28", "12-29", "12-30", "12-31",
        "01-04", "01-05", "01-06", "01-07", "01-08", "01-10", "01-11",
    ]  # fmt: skip
    assert days("2026-12-28", "2027-01-11", WEEK, "next") == ["12-28", "01-04", "01-11"]
    assert len(days("2026-12-28", "2027-01-11", DAY, "ignore")) == 15


def test_a_move_that_would_leave_the_span_turns_the_other_way() -> None:
    # 民法典宣传月 2026: May 1st is in the Labour Day holiday (05-01..05-05); moving it back
    # would leave the month (04-30), so it goes forward to 05-06.
    assert days("2026-05-01", "2026-05-31", WEEK, "previous") == [
        "05-06", "05-08", "05-15", "05-22", "05-29",
    ]  # fmt: skip


def test_a_span_without_a_workday_gets_no_send_and_one_day_gets_one() -> None:
    # Spring Festival 2026: 02-15..02-23 are all days off.
    assert days("2026-02-15", "2026-02-23", WORKDAY, "previous") == []
    assert days("2026-02-15", "2026-02-23", DAY, "previous") == []
    # A one-day occurrence: `on: start` for a days cadence, the day itself if a workday.
    assert days("2026-10-03", "2026-10-03", DAY, "previous") == ["09-30"]
    assert days("2026-10-03", "2026-10-03", WORKDAY, "previous") == []
    assert days("2026-10-09", "2026-10-09", WORKDAY, "previous") == ["10-09"]


spans = st.builds(
    lambda start, length: Occurrence(start, start + timedelta(days=length)),
    st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31)),
    st.integers(0, 60),
)
cadences = st.one_of(st.just(WORKDAY), st.builds(Cadence, st.just("days"), st.integers(1, 20)))
policies = st.sampled_from(["previous", "next", "ignore"])


@settings(max_examples=300, deadline=None)
@given(spans, cadences, policies)
def test_sends_are_strictly_increasing_inside_the_span_and_on_workdays(
    occ: Occurrence, cadence: Cadence, policy: WorkdayPolicy
) -> None:
    sends = every_days(occ, cadence, policy, CALENDAR)
    assert all(a < b for a, b in pairwise(sends))
    if occ.start != occ.end:
        assert all(occ.start <= d <= occ.end for d in sends)
    if cadence.unit == "workday" or policy != "ignore":
        assert all(CALENDAR.is_workday(d) for d in sends)
    if cadence.unit == "workday" and occ.start != occ.end:
        span = [occ.start + timedelta(days=i) for i in range((occ.end - occ.start).days + 1)]
        assert sends == [d for d in span if CALENDAR.is_workday(d)]


CAMPAIGN = """\
audiences:
  staff: [{email: a@example.com, name: 甲}]
events:
  - id: week
    title: 宪法宣传周
    date: "12-01..12-07"
    reminders:
      - every: 每个工作日
        send_at: "08:30"
      - before: 10 days
      - on: start
"""


def test_each_day_of_a_campaign_is_its_own_planned_send_and_older_keys_stay(
    tmp_path: Path,
) -> None:
    write_schedule(tmp_path, CAMPAIGN)
    schedule = load_schedule(tmp_path)
    since = datetime(2026, 11, 1, tzinfo=TZ)
    sends = plan(schedule, since, since + timedelta(days=40), TZ)
    keys = [p.plan_key for p in sends]
    assert keys == [
        "week/2026-12-01/before-10d",
        "week/2026-12-01/every-workday@2026-12-01",
        "week/2026-12-01/on-start",
        "week/2026-12-01/every-workday@2026-12-02",
        "week/2026-12-01/every-workday@2026-12-03",
        "week/2026-12-01/every-workday@2026-12-04",
        "week/2026-12-01/every-workday@2026-12-07",
    ]
    series = [p for p in sends if p.reminder.every is not None]
    assert [(p.index, p.count) for p in series] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert all(p.send_at.time() == time(8, 30) for p in series)
    assert series[0].reminder.label == "每个工作日"


def test_every_on_an_event_of_single_days_is_refused_by_check(tmp_path: Path) -> None:
    write_schedule(
        tmp_path,
        """\
        audiences:
          staff: [{email: a@example.com, name: 甲}]
        events:
          - {id: day, title: 日, date: "4·15", reminders: [{every: workday}]}
          - {id: two, title: 二, date: "4·15", reminders: [{every: day, on: start}]}
          - {id: bad, title: 坏, month: 5, reminders: [{every: often}]}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_schedule(tmp_path)
    errors = "\n".join(caught.value.errors)
    assert "events[0].reminders[0].every: the event's dates are single days" in errors
    assert "use on: start" in errors
    assert "events[1].reminders[0]: a reminder needs exactly one of before, on, after, every" in (
        errors
    )
    assert "events[2].reminders[0].every: 'often' is not a cadence" in errors


async def test_a_campaign_day_renders_its_position_and_is_sent_once(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(grace=timedelta(hours=1))  # no catch-up of 12-02's send
    write_schedule(settings.schedules_dir, CAMPAIGN)
    (settings.templates_dir / "reminder" / "body.txt").write_text(
        "{{ event.title }}：第{{ reminder.index }}天 / 共{{ reminder.count }}天"
        "（{{ reminder.kind }}）\n",
        encoding="utf-8",
    )
    clock = [datetime(2026, 12, 3, 8, 26, tzinfo=TZ).timestamp()]
    async with App(settings, clock=lambda: clock[0]) as app:
        for _ in range(2):  # a second pass (a restart, a reload) makes nothing new
            await app.prepare()
        rows = await app.store.list_deliveries()
        clock[0] += 300
        await app.worker.run_until_idle()
    assert [(r.key, r.reminder_id) for r in rows] == [
        ("week/2026-12-01/every-workday@2026-12-03/a@example.com/email", "every-workday")
    ]
    (sent,) = list((settings.mail_drop_dir / "new").iterdir())
    message = message_from_bytes(sent.read_bytes(), policy=default)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "宪法宣传周：第3天 / 共5天（every）" in body.get_content()  # type: ignore[attr-defined]


ONE_DAY_START = """\
audiences:
  staff: [{email: a@example.com, name: 甲}]
events:
  - id: week
    title: 宪法宣传周
    date: "12-01..12-07"
    reminders:
      - {id: start, on: start, send_at: "08:00"}
"""


async def test_a_series_that_replaces_a_one_day_reminder_does_not_resend_its_day(
    make_settings: MakeSettings,
) -> None:
    """An upgrade during the week: 12-01's one-day send went out under the old reminder."""
    settings = make_settings(grace=timedelta(hours=6))
    write_schedule(settings.schedules_dir, ONE_DAY_START)
    clock = [datetime(2026, 12, 1, 8, 5, tzinfo=TZ).timestamp()]
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.prepare()
        write_schedule(
            settings.schedules_dir,
            ONE_DAY_START.replace(
                '{id: start, on: start, send_at: "08:00"}',
                '{id: daily, every: workday, send_at: "08:00", replaces: start}',
            ),
        )
        assert app.reload()
        await app.prepare()  # 12-01 08:05, within grace of the series' first send
        clock[0] += 86400  # 12-02
        await app.prepare()
        keys = [r.key for r in await app.store.list_deliveries()]
    assert sorted(keys) == [
        "week/2026-12-01/daily@2026-12-02/a@example.com/email",
        "week/2026-12-01/start/a@example.com/email",
    ]


def test_a_reminder_cannot_replace_itself(tmp_path: Path) -> None:
    write_schedule(
        tmp_path,
        ONE_DAY_START.replace("on: start,", "on: start, replaces: [start],"),
    )
    with pytest.raises(ConfigError) as caught:
        load_schedule(tmp_path)
    assert "events[0].reminders[0].replaces: 'start' is its own id" in caught.value.errors[0]

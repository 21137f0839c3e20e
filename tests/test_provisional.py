"""Sends whose day depends on a year nobody has described yet are marked 暂定 everywhere."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
from click.testing import CliRunner

from notifier.checks import load_config
from notifier.cli.main import main
from notifier.schedule.ical import calendar_feed
from notifier.schedule.load import load_schedule
from notifier.schedule.planner import plan, planned_json
from tests.conftest import MakeSettings, write_schedule

TZ = ZoneInfo("Asia/Shanghai")
NOTICES = Path(__file__).parent / "fixtures" / "notices"

# 2027 has no built-in data (chinese-calendar 1.11.0 stops at 2026); 2035 neither.
SCHEDULE = """\
audiences:
  staff: [{email: a@example.com, name: 甲}]
events:
  - id: newyear
    title: 元旦前提醒
    date: "2027-01-04"
    reminders:
      - before: 10 days          # 2026-12-25: computed from 2026 data only
      - before: 1个工作日        # looks at 2027-01-01 (off by law): 12-31, provisional
      - {on: start, workdays: ignore}   # no workday lookup at all: never provisional
  - id: week
    title: 宪法宣传周
    date: "12-01..12-07"
    reminders: [{every: workday}]
"""


def sends(schedule_dir: Path, first: str, days: int) -> list[tuple[str, str, bool]]:
    schedule = load_schedule(schedule_dir)
    since = datetime.fromisoformat(first).replace(tzinfo=TZ)
    return [
        (p.reminder.id, p.send_date.isoformat(), p.provisional)
        for p in plan(schedule, since, since + timedelta(days=days), TZ)
    ]


def test_a_send_is_provisional_only_when_its_day_depends_on_an_unknown_year(
    tmp_path: Path,
) -> None:
    write_schedule(tmp_path, SCHEDULE)
    got = sends(tmp_path, "2026-12-20", 20)
    assert got == [
        ("before-10d", "2026-12-25", False),
        ("before-1wd", "2026-12-31", True),  # 01-01 is off by law; the rest is a guess
        ("on-start", "2027-01-04", False),
    ]
    week = sends(tmp_path, "2027-11-25", 20)
    assert {p for _, _, p in week} == {True} and len(week) == 5  # Mon-Fri fallback


def test_a_holidays_table_for_the_year_makes_its_sends_firm(tmp_path: Path) -> None:
    write_schedule(tmp_path, SCHEDULE)
    write_schedule(
        tmp_path,
        'holidays:\n  "2027":\n    off: ["2027-01-01..2027-01-03"]\n',
        name="holidays.yaml",
    )
    assert [p for _, _, p in sends(tmp_path, "2026-12-20", 20)] == [False, False, False]


def test_upcoming_marks_provisional_sends_in_json_and_in_the_table(
    make_settings: MakeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    write_schedule(settings.schedules_dir, SCHEDULE)
    monkeypatch.chdir(tmp_path)
    env = {
        "NOTIFIER_SCHEDULES_DIR": str(settings.schedules_dir),
        "NOTIFIER_TEMPLATES_DIR": str(settings.templates_dir),
    }
    runner = CliRunner()
    window = ["--from", "2026-12-20", "--to", "2027-01-10"]
    result = runner.invoke(main, ["upcoming", *window, "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [r["provisional"] for r in json.loads(result.output)] == [False, True, False]
    table = runner.invoke(main, ["upcoming", *window], env=env)
    assert "2026-12-31 09:00 Thu（暂定）" in table.output
    assert "2026-12-25 09:00 Fri（暂定）" not in table.output
    assert "（暂定）1 provisional" in table.output


def test_planned_json_always_says_whether_a_send_is_provisional(tmp_path: Path) -> None:
    write_schedule(tmp_path, SCHEDULE)
    schedule = load_schedule(tmp_path)
    since = datetime(2026, 12, 20, tzinfo=TZ)
    sends = plan(schedule, since, since + timedelta(days=20), TZ)
    rows = [planned_json(p, schedule) for p in sends]
    assert [r["provisional"] for r in rows] == [False, True, False]


def test_the_calendar_feed_marks_provisional_sends(tmp_path: Path) -> None:
    write_schedule(tmp_path, SCHEDULE)
    schedule = load_schedule(tmp_path)
    now = datetime(2026, 12, 20, tzinfo=TZ)
    feed = icalendar.Calendar.from_ical(
        calendar_feed(schedule, today=date(2026, 12, 20), tz=TZ, name="测试", now=now, days=30)
    )
    (event,) = [c for c in feed.walk("VEVENT") if str(c["uid"]).startswith("newyear")]
    assert str(event["summary"]) == "元旦前提醒（暂定）"
    description = str(event["description"])
    assert "(before-1wd): 2026-12-31 09:00（暂定） → staff" in description
    assert "(before-10d): 2026-12-25 09:00 → staff" in description


def test_check_counts_provisional_sends_and_names_their_years(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    write_schedule(settings.schedules_dir, SCHEDULE)
    _, _, warnings = load_config(settings, now=datetime(2026, 12, 20, tzinfo=TZ))
    (line,) = [w for w in warnings if "provisional" in w]
    # 400 days from 2026-12-20: newyear's 3 sends (1 provisional) and 宪法宣传周 2027 (5).
    assert line.startswith("6 of 8 planned sends in the next 400 days are provisional (暂定)")
    assert "workday data for 2027, not yet known" in line

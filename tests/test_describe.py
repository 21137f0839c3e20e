"""Dates in words: rules as staff say them, and why a reminder moved (real 2026 data)."""

from __future__ import annotations

from datetime import date, time

import pytest

from notifier.dates.cadence import every_days, parse_cadence
from notifier.dates.rules import (
    DateSpec,
    Duration,
    Occurrence,
    lunar_spec,
    month_spec,
    parse_date,
    rrule_spec,
    send_day,
)
from notifier.dates.workdays import WorkCalendar
from notifier.schedule.describe import (
    lunar_day_name,
    move_reason,
    rule_in_words,
    span_in_words,
    workday_source,
)
from notifier.schedule.model import Reminder


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (parse_date("4·15"), "每年4月15日"),
        (parse_date("12-01..12-07"), "每年12月1日至7日"),
        (parse_date("12-25..01-05"), "每年12月25日至次年1月5日"),
        (parse_date("2026-09-03"), "2026年9月3日（一次）"),
        (parse_date("2026-09-28..2026-10-08"), "2026年9月28日至10月8日（一次）"),
        (month_spec(5), "每年5月（整月）"),
        (lunar_spec("01-01"), "每年农历正月初一"),
        (lunar_spec("08-15"), "每年农历八月十五"),
        (lunar_spec("12-30"), "每年农历腊月三十"),
        (rrule_spec("FREQ=MONTHLY;BYMONTH=3,6,9,12;BYDAY=TH;BYSETPOS=3"), "每季度末月第三个星期四"),
        (rrule_spec("FREQ=MONTHLY;BYDAY=-1FR"), "每月最后一个星期五"),
        (rrule_spec("FREQ=WEEKLY;BYDAY=MO"), "每周星期一"),
        (rrule_spec("FREQ=YEARLY;BYMONTH=6;BYMONTHDAY=5"), "每年6月5日"),
        (rrule_spec("FREQ=DAILY;COUNT=3"), "按规则 FREQ=DAILY;COUNT=3"),
    ],
)
def test_a_rule_reads_as_staff_would_say_it(spec: DateSpec, words: str) -> None:
    assert rule_in_words(spec) == words


@pytest.mark.parametrize(
    ("day", "name"),
    [(1, "初一"), (10, "初十"), (15, "十五"), (20, "二十"), (23, "廿三"), (30, "三十")],
)
def test_lunar_days_have_their_names(day: int, name: str) -> None:
    assert lunar_day_name(day) == name


def test_spans_in_words_name_the_month_once_when_they_share_it() -> None:
    assert span_in_words(date(2026, 4, 4), date(2026, 4, 6)) == "4月4日至6日"
    assert span_in_words(date(2026, 4, 30), date(2026, 5, 5)) == "4月30日至5月5日"
    assert span_in_words(date(2026, 4, 15), date(2026, 4, 15)) == "4月15日"


def _reminder(kind: str, value: Duration | str, policy: str = "previous") -> Reminder:
    return Reminder("r", kind, value, time(9), policy, "staff", "reminder")  # type: ignore[arg-type]


CAL = WorkCalendar()


@pytest.mark.parametrize(
    ("start", "kind", "value", "policy", "sent", "reason"),
    [
        # 4·15 minus 10 days is 04-05, inside 清明 (04-04..04-06, 2026).
        (date(2026, 4, 15), "before", Duration(10, "days"), "previous", date(2026, 4, 3),
         "4月4日至6日清明节放假，提前至4月3日"),
        (date(2026, 4, 19), "on", "start", "previous", date(2026, 4, 17),
         "4月18日至19日是周末，提前至4月17日"),
        (date(2026, 5, 1), "on", "start", "next", date(2026, 5, 6),
         "5月1日至5日劳动节放假，顺延至5月6日"),
        (date(2026, 4, 15), "on", "start", "previous", date(2026, 4, 15), None),
        (date(2026, 10, 9), "before", Duration(3, "workdays"), "previous", date(2026, 9, 29),
         "按工作日计算，跳过10月1日至7日国庆节放假"),
        (date(2026, 4, 15), "before", Duration(3, "workdays"), "previous", date(2026, 4, 10), None),
    ],
)  # fmt: skip
def test_a_moved_reminder_says_why(
    start: date, kind: str, value: Duration | str, policy: str, sent: date, reason: str | None
) -> None:
    occ = Occurrence(start, start)
    rem = _reminder(kind, value, policy)
    assert send_day(occ, rem.kind, rem.value, rem.workdays, CAL) == sent
    assert move_reason(occ, rem, sent, CAL) == reason


def test_a_campaign_day_says_why_only_when_it_moved_off_its_cadence_day() -> None:
    # 宪法宣传周 2026 (12-01..12-07): `every: workday` never moves. 民法典宣传月 2026 weekly
    # from 05-01 (劳动节 05-01..05-05) with `workdays: next`: the first send moves to 05-06.
    week = Occurrence(date(2026, 12, 1), date(2026, 12, 7))
    daily = Reminder("daily", "on", "start", time(8, 30), "next", "staff", "reminder",
                     every=parse_cadence("workday"))  # fmt: skip
    for sent in every_days(week, parse_cadence("workday"), "next", CAL):
        assert move_reason(week, daily, sent, CAL) is None
    month = Occurrence(date(2026, 5, 1), date(2026, 5, 31))
    weekly = Reminder("weekly", "on", "start", time(9), "next", "staff", "reminder",
                      every=parse_cadence("week"))  # fmt: skip
    sends = every_days(month, parse_cadence("week"), "next", CAL)
    assert sends[0] == date(2026, 5, 6)
    assert move_reason(month, weekly, sends[0], CAL) == "5月1日至5日劳动节放假，顺延至5月6日"
    assert sends[1] == date(2026, 5, 8)
    assert move_reason(month, weekly, sends[1], CAL) is None


def test_a_day_off_from_the_config_table_is_named_as_such() -> None:
    table = WorkCalendar({date(2027, 4, 5): False, date(2027, 4, 6): False}, {2027})
    occ = Occurrence(date(2027, 4, 15), date(2027, 4, 15))
    rem = _reminder("before", Duration(10, "days"))
    sent = send_day(occ, rem.kind, rem.value, rem.workdays, table)
    assert sent == date(2027, 4, 2)
    assert move_reason(occ, rem, sent, table) == "4月3日至6日放假，提前至4月2日"


def test_workday_data_is_official_config_or_provisional() -> None:
    assert workday_source(2026, CAL) == "official"
    assert workday_source(2027, CAL) == "provisional"
    assert workday_source(2027, WorkCalendar({}, {2027})) == "config"

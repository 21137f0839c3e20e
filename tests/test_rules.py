"""The date engine on real 2026-2028 dates: parsing, occurrences, lunar rules, send days."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from lunar_python import Lunar as LunarDate
from lunar_python import LunarMonth

from notifier.dates.rules import (
    Annual,
    AnnualSpan,
    DateSpec,
    Duration,
    Lunar,
    Occurrence,
    OneOff,
    TriggerKind,
    TriggerValue,
    lead_margin,
    lunar_spec,
    month_spec,
    occurrences,
    parse_date,
    parse_duration,
    parse_grace,
    rrule_spec,
    send_day,
)
from notifier.dates.workdays import WorkCalendar, WorkdayPolicy

D = date.fromisoformat
CALENDAR = WorkCalendar()


def one_day(day: str) -> Occurrence:
    return Occurrence(D(day), D(day))


def in_year(specs: list[DateSpec], year: int) -> list[Occurrence]:
    return occurrences(specs, date(year, 1, 1), date(year, 12, 31))


# --- durations and grace --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10 days", Duration(10, "days")),
        ("10 day", Duration(10, "days")),
        ("1 day", Duration(1, "days")),
        ("10d", Duration(10, "days")),
        ("10D", Duration(10, "days")),
        ("10天", Duration(10, "days")),
        ("10 天", Duration(10, "days")),
        ("2 weeks", Duration(2, "weeks")),
        ("2w", Duration(2, "weeks")),
        ("2周", Duration(2, "weeks")),
        ("2个星期", Duration(2, "weeks")),
        ("3 workdays", Duration(3, "workdays")),
        ("3workday", Duration(3, "workdays")),
        ("3个工作日", Duration(3, "workdays")),
        ("3工作日", Duration(3, "workdays")),
        (" 0 days ", Duration(0, "days")),
        (7, Duration(7, "days")),
        (0, Duration(0, "days")),
    ],
)
def test_parse_duration_reads_english_chinese_and_short_forms(
    text: str | int, expected: Duration
) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "7x",
        "",
        "days",
        "-1 days",
        "1.5 days",
        "ten days",
        "3 months",
        "10 d d",
        "99999 days",
        -1,
        True,
    ],
)
def test_parse_duration_refuses_anything_else_with_one_message(text: str | int) -> None:
    with pytest.raises(ValueError) as error:
        parse_duration(text)
    assert str(error.value) == f"'{text}' is not a duration"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("24 hours", timedelta(hours=24)),
        ("1 hour", timedelta(hours=1)),
        ("2 days", timedelta(days=2)),
        ("1d", timedelta(days=1)),
        ("30m", timedelta(minutes=30)),
        ("30 minutes", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2小时", timedelta(hours=2)),
        ("0", timedelta(0)),
        (0, timedelta(0)),
    ],
)
def test_parse_grace_reads_time_spans(text: str | int, expected: timedelta) -> None:
    assert parse_grace(text) == expected


@pytest.mark.parametrize("text", ["30", 30, "", "h", "24x", "-1h", "1.5h", "99999999999999 days"])
def test_parse_grace_refuses_ambiguous_or_bad_spans(text: str | int) -> None:
    with pytest.raises(ValueError) as error:
        parse_grace(text)
    assert str(error.value) == f"'{text}' is not a time span"


# --- parse_date -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("04-15", Annual(4, 15)),
        ("4-15", Annual(4, 15)),
        ("4·15", Annual(4, 15)),  # U+00B7, how 4·15 国家安全教育日 is written
        ("4・15", Annual(4, 15)),
        ("4.15", Annual(4, 15)),
        ("4月15日", Annual(4, 15)),
        ("12月4日", Annual(12, 4)),
        ("02-29", Annual(2, 29)),
        ("12-01..12-07", AnnualSpan(12, 1, 12, 7)),
        ("12月1日..12月7日", AnnualSpan(12, 1, 12, 7)),
        ("12-28..01-03", AnnualSpan(12, 28, 1, 3)),
        ("2026-09-03", OneOff(D("2026-09-03"), D("2026-09-03"))),
        ("2026-10-01..2026-10-07", OneOff(D("2026-10-01"), D("2026-10-07"))),
        (" 2026-12-28 .. 2027-01-03 ", OneOff(D("2026-12-28"), D("2027-01-03"))),
    ],
)
def test_parse_date_reads_every_format(text: str, expected: DateSpec) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "13-01",
        "00-10",
        "04-31",
        "02-30",
        "4/15",
        "4-15日",
        "2026-02-29",
        "2026-1-5",
        "2026-13-01",
        "04-15..",
        "..04-15",
        "04-15..2026-04-20",
        "",
        "tomorrow",
    ],
)
def test_parse_date_refuses_bad_dates(text: str) -> None:
    with pytest.raises(ValueError, match=f"^'{text}' is not a date$"):
        parse_date(text)


def test_a_one_off_span_must_not_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_date("2026-10-07..2026-10-01")


# --- occurrences ----------------------------------------------------------------------------


def test_an_annual_date_occurs_once_a_year() -> None:
    assert occurrences([Annual(4, 15)], D("2026-01-01"), D("2027-12-31")) == [
        one_day("2026-04-15"),
        one_day("2027-04-15"),
    ]


def test_02_29_occurs_only_in_leap_years() -> None:
    assert occurrences([parse_date("02-29")], D("2026-01-01"), D("2028-12-31")) == [
        one_day("2028-02-29")
    ]


def test_an_annual_span_crossing_the_new_year_ends_in_the_next_year() -> None:
    assert in_year([parse_date("12-28..01-03")], 2026) == [
        Occurrence(D("2026-12-28"), D("2027-01-03"))
    ]


def test_an_annual_span_is_found_by_its_start_only() -> None:
    # the 2025-12-28 occurrence is still running on 2026-01-01, but started before the window
    assert in_year([parse_date("12-28..01-03")], 2026)[0].start == D("2026-12-28")


def test_a_span_ending_on_02_29_ends_on_02_28_in_common_years() -> None:
    spec = parse_date("02-20..02-29")
    assert in_year([spec], 2027) == [Occurrence(D("2027-02-20"), D("2027-02-28"))]
    assert in_year([spec], 2028) == [Occurrence(D("2028-02-20"), D("2028-02-29"))]


def test_the_constitution_week_spans_seven_days() -> None:
    assert in_year([parse_date("12-01..12-07")], 2026) == [
        Occurrence(D("2026-12-01"), D("2026-12-07"))
    ]


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2026-01-01", "2026-12-31", [Occurrence(D("2026-10-01"), D("2026-10-07"))]),
        ("2026-10-01", "2026-10-01", [Occurrence(D("2026-10-01"), D("2026-10-07"))]),
        ("2026-10-02", "2026-12-31", []),
        ("2027-01-01", "2027-12-31", []),
    ],
)
def test_a_one_off_occurs_only_when_its_start_is_in_the_window(
    since: str, until: str, expected: list[Occurrence]
) -> None:
    assert occurrences([parse_date("2026-10-01..2026-10-07")], D(since), D(until)) == expected


@pytest.mark.parametrize(
    ("month", "start", "end"),
    [
        (6, "2026-06-01", "2026-06-30"),
        (2, "2026-02-01", "2026-02-28"),
        (12, "2026-12-01", "2026-12-31"),
    ],
)
def test_a_whole_month_runs_from_the_first_to_the_last_day(
    month: int, start: str, end: str
) -> None:
    assert in_year([month_spec(month)], 2026) == [Occurrence(D(start), D(end))]


def test_a_whole_month_in_a_leap_february_has_29_days() -> None:
    assert in_year([month_spec(2)], 2028) == [Occurrence(D("2028-02-01"), D("2028-02-29"))]


@pytest.mark.parametrize("month", [0, 13, -1])
def test_month_spec_refuses_months_outside_1_to_12(month: int) -> None:
    with pytest.raises(ValueError, match="is not a month"):
        month_spec(month)


def test_occurrences_are_sorted_and_deduplicated() -> None:
    specs: list[DateSpec] = [
        Annual(12, 4),
        parse_date("12月4日"),
        Annual(4, 15),
        OneOff(D("2026-04-15"), D("2026-04-15")),
    ]
    assert in_year(specs, 2026) == [one_day("2026-04-15"), one_day("2026-12-04")]


def test_an_empty_or_reversed_window_has_no_occurrences() -> None:
    assert occurrences([Annual(4, 15)], D("2026-05-01"), D("2026-04-01")) == []
    assert occurrences([], D("2026-01-01"), D("2026-12-31")) == []


# --- lunar ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "year", "expected"),
    [
        ("08-15", 2026, "2026-09-25"),  # 中秋
        ("8-15", 2026, "2026-09-25"),
        ("01-01", 2027, "2027-02-06"),  # 春节
        ("01-01", 2026, "2026-02-17"),
        ("05-05", 2026, "2026-06-19"),  # 端午
        ("12-08", 2026, "2026-01-26"),  # 腊八 of lunar 2025, in January of 2026
    ],
)
def test_a_lunar_date_converts_to_its_solar_day(text: str, year: int, expected: str) -> None:
    assert in_year([lunar_spec(text)], year) == [one_day(expected)]


def test_lunar_day_30_of_a_29_day_month_is_its_last_day() -> None:
    # 腊月 of lunar 2025 and of lunar 2026 both have 29 days: 除夕 is day 29
    assert LunarMonth.fromYm(2025, 12).getDayCount() == 29
    assert LunarMonth.fromYm(2026, 12).getDayCount() == 29
    assert in_year([lunar_spec("12-30")], 2026) == [one_day("2026-02-16")]
    assert in_year([lunar_spec("12-30")], 2027) == [one_day("2027-02-05")]
    # which is the eve of 春节 indeed
    assert in_year([lunar_spec("01-01")], 2026) == [one_day("2026-02-17")]


def test_lunar_day_30_of_a_30_day_month_is_day_30() -> None:
    assert LunarMonth.fromYm(2026, 1).getDayCount() == 30
    assert in_year([lunar_spec("01-30")], 2026) == [one_day("2026-03-18")]


def test_a_lunar_date_never_means_the_leap_month() -> None:
    # 2025 has a 闰六月: "06-15" is 六月十五 (07-09), not 闰六月十五 (08-08), and occurs once
    assert LunarDate.fromYmd(2025, -6, 15).getSolar().toYmd() == "2025-08-08"
    assert in_year([lunar_spec("06-15")], 2025) == [one_day("2025-07-09")]
    # 2028 has a 闰五月: 五月十五 is 06-07, 闰五月十五 (07-07) is never used
    assert in_year([lunar_spec("05-15")], 2028) == [one_day("2028-06-07")]


def test_lunar_conversion_matches_lunar_python_for_every_day_of_three_years() -> None:
    for year in (2025, 2026, 2027):
        for month in range(1, 13):
            for day in range(1, LunarMonth.fromYm(year, month).getDayCount() + 1):
                solar = D(LunarDate.fromYmd(year, month, day).getSolar().toYmd())
                assert occurrences([Lunar(month, day)], solar, solar) == [Occurrence(solar, solar)]


@pytest.mark.parametrize("text", ["13-01", "00-01", "01-31", "01-00", "1/1", "闰6-15", ""])
def test_lunar_spec_refuses_bad_dates(text: str) -> None:
    with pytest.raises(ValueError, match="is not a lunar date"):
        lunar_spec(text)


# --- rrule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=YEARLY;BYMONTH=6;BYDAY=2SA",
        "RRULE:FREQ=YEARLY;BYMONTH=6;BYDAY=2SA",
        "DTSTART:20170101\nRRULE:FREQ=YEARLY;BYMONTH=6;BYDAY=2SA",
        "DTSTART:20170101\nFREQ=YEARLY;BYMONTH=6;BYDAY=2SA",
    ],
)
def test_an_rrule_finds_the_heritage_day(rule: str) -> None:
    # 文化和自然遗产日: the second Saturday of June
    assert in_year([rrule_spec(rule)], 2026) == [one_day("2026-06-13")]


def test_an_rrule_occurrence_lasts_duration_days() -> None:
    spec = rrule_spec("FREQ=YEARLY;BYMONTH=6;BYDAY=2SA", duration_days=2)
    assert in_year([spec], 2026) == [Occurrence(D("2026-06-13"), D("2026-06-14"))]


def test_an_rrule_respects_its_dtstart() -> None:
    spec = rrule_spec("DTSTART:20270101\nRRULE:FREQ=YEARLY;BYMONTH=6;BYDAY=2SA")
    assert occurrences([spec], D("2026-01-01"), D("2027-12-31")) == [one_day("2027-06-12")]


def test_an_rrule_with_a_time_of_day_still_counts_on_the_last_day() -> None:
    spec = rrule_spec("DTSTART:20260101T090000\nRRULE:FREQ=MONTHLY;BYMONTHDAY=-1")
    assert occurrences([spec], D("2026-01-01"), D("2026-01-31")) == [one_day("2026-01-31")]


@pytest.mark.parametrize(
    ("rule", "duration", "message"),
    [
        ("FREQ=BOGUS", 1, "invalid 'FREQ'"),
        ("garbage", 1, "is not a valid RRULE"),
        ("", 1, "is not a valid RRULE"),
        ("FREQ=HOURLY", 1, "FREQ=HOURLY is finer than a day"),
        ("DTSTART:20200101T090000Z\nRRULE:FREQ=YEARLY", 1, "timezone-aware"),
        ("FREQ=YEARLY", 0, "duration_days must be a positive integer"),
    ],
)
def test_rrule_spec_refuses_bad_rules_eagerly(rule: str, duration: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rrule_spec(rule, duration)


# --- send_day -------------------------------------------------------------------------------

SECURITY_DAY = one_day("2026-04-15")  # 全民国家安全教育日, a Wednesday
NATIONAL_DAY = Occurrence(D("2026-10-01"), D("2026-10-07"))
CONSTITUTION_WEEK = Occurrence(D("2026-12-01"), D("2026-12-07"))
CONSTITUTION_DAY = one_day("2026-12-04")  # a Friday
HERITAGE_DAY = one_day("2026-06-13")  # a Saturday


@pytest.mark.parametrize(
    ("occurrence", "kind", "value", "policy", "expected"),
    [
        # 04-05 is inside 清明 (04-04..04-06): previous -> Friday 04-03, next -> 04-07
        (SECURITY_DAY, "before", Duration(10, "days"), "previous", "2026-04-03"),
        (SECURITY_DAY, "before", Duration(10, "days"), "next", "2026-04-07"),
        (SECURITY_DAY, "before", Duration(10, "days"), "ignore", "2026-04-05"),
        (SECURITY_DAY, "before", Duration(3, "workdays"), "previous", "2026-04-10"),
        (SECURITY_DAY, "before", Duration(3, "workdays"), "ignore", "2026-04-10"),
        (SECURITY_DAY, "before", Duration(1, "weeks"), "previous", "2026-04-08"),
        (SECURITY_DAY, "on", "start", "previous", "2026-04-15"),
        (SECURITY_DAY, "on", "end", "next", "2026-04-15"),
        (SECURITY_DAY, "before", Duration(0, "days"), "previous", "2026-04-15"),
        # National Day: the holiday itself is the occurrence
        (NATIONAL_DAY, "before", Duration(1, "workdays"), "previous", "2026-09-30"),
        (NATIONAL_DAY, "before", Duration(5, "workdays"), "previous", "2026-09-23"),
        (NATIONAL_DAY, "before", Duration(1, "weeks"), "previous", "2026-09-24"),
        (NATIONAL_DAY, "before", Duration(6, "days"), "previous", "2026-09-24"),  # 09-25 中秋
        (NATIONAL_DAY, "on", "start", "previous", "2026-09-30"),
        (NATIONAL_DAY, "on", "start", "next", "2026-10-08"),
        (NATIONAL_DAY, "on", "end", "next", "2026-10-08"),
        (NATIONAL_DAY, "after", Duration(1, "workdays"), "previous", "2026-10-08"),
        (NATIONAL_DAY, "after", Duration(3, "workdays"), "previous", "2026-10-10"),  # make-up Sat
        (NATIONAL_DAY, "after", Duration(4, "days"), "next", "2026-10-12"),  # 10-11 is a Sunday
        # 宪法宣传周 12-01..12-07: "after" counts from the end
        (CONSTITUTION_WEEK, "after", Duration(1, "workdays"), "previous", "2026-12-08"),
        (CONSTITUTION_WEEK, "before", Duration(1, "workdays"), "previous", "2026-11-30"),
        # over a weekend: 12-05 is a Saturday
        (CONSTITUTION_DAY, "after", Duration(1, "days"), "next", "2026-12-07"),
        (CONSTITUTION_DAY, "after", Duration(1, "days"), "previous", "2026-12-04"),
        (CONSTITUTION_DAY, "after", Duration(1, "days"), "ignore", "2026-12-05"),
        (CONSTITUTION_DAY, "after", Duration(1, "workdays"), "ignore", "2026-12-07"),
        # an event on a Saturday
        (HERITAGE_DAY, "before", Duration(0, "workdays"), "previous", "2026-06-12"),
        (HERITAGE_DAY, "after", Duration(0, "workdays"), "next", "2026-06-15"),
        (HERITAGE_DAY, "on", "start", "ignore", "2026-06-13"),
        (HERITAGE_DAY, "before", Duration(2, "weeks"), "previous", "2026-05-29"),
        # a shift never carries "before" past the start, nor "after" before the end
        (one_day("2026-10-03"), "before", Duration(1, "days"), "next", "2026-09-30"),
        (one_day("2026-10-03"), "before", Duration(0, "workdays"), "next", "2026-09-30"),
        (one_day("2026-10-08"), "before", Duration(3, "days"), "next", "2026-10-08"),
        (one_day("2026-10-03"), "after", Duration(1, "days"), "previous", "2026-10-08"),
        (one_day("2026-10-03"), "on", "start", "next", "2026-10-08"),  # "on" has no side
        # 春节 2026: 02-15..02-23 off, make-up Saturday 02-14
        (one_day("2026-02-17"), "before", Duration(1, "workdays"), "previous", "2026-02-14"),
        (one_day("2026-02-17"), "on", "start", "next", "2026-02-24"),
    ],
)
def test_send_day(
    occurrence: Occurrence,
    kind: TriggerKind,
    value: TriggerValue,
    policy: WorkdayPolicy,
    expected: str,
) -> None:
    assert send_day(occurrence, kind, value, policy, CALENDAR) == D(expected)


def test_send_day_in_2027_uses_the_override_table() -> None:
    calendar = WorkCalendar({D("2027-02-05"): False, D("2027-02-04"): False}, {2027})
    spring_festival = one_day("2027-02-06")  # a Saturday
    assert send_day(spring_festival, "before", Duration(1, "workdays"), "previous", calendar) == D(
        "2027-02-03"
    )
    # Without the table: Monday-Friday less the statutory days, and 02-05 is 除夕.
    assert send_day(spring_festival, "before", Duration(1, "workdays"), "previous", CALENDAR) == D(
        "2027-02-04"
    )


@pytest.mark.parametrize(
    ("kind", "value"),
    [("on", Duration(1, "days")), ("before", "start"), ("after", "end"), ("during", "start")],
)
def test_send_day_refuses_a_kind_value_mismatch(kind: TriggerKind, value: TriggerValue) -> None:
    with pytest.raises(ValueError):
        send_day(SECURITY_DAY, kind, value, "previous", CALENDAR)


@pytest.mark.parametrize(
    ("value", "margin"),
    [
        (Duration(0, "days"), 30),
        (Duration(10, "days"), 40),
        (Duration(2, "weeks"), 44),
        (Duration(3, "workdays"), 39),
        ("start", 30),
    ],
)
def test_lead_margin_covers_the_offset_and_a_holiday_block(
    value: TriggerValue, margin: int
) -> None:
    assert lead_margin(value) == margin


def test_a_negative_duration_cannot_be_built() -> None:
    with pytest.raises(ValueError):
        Duration(-1, "days")

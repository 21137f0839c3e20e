"""WorkCalendar against the real 2026 State Council schedule, overrides and the 2027 fallback."""

from __future__ import annotations

from datetime import date

import chinese_calendar
import pytest

from notifier.dates.workdays import (
    WorkCalendar,
    WorkdayPolicy,
    parse_holiday_table,
    statutory_days_off,
)

D = date.fromisoformat

# 2026 per the State Council notice of 2025-11-04, as chinese_calendar 1.11.0 carries it.
OFFICIAL_2026 = [
    # 元旦: Thu 01-01..Sat 01-03 off, Sunday 01-04 a make-up workday
    ("2026-01-01", False),
    ("2026-01-03", False),
    ("2026-01-04", True),
    # 春节: 02-15..02-23 off, Saturdays 02-14 and 02-28 make-up workdays
    ("2026-02-14", True),
    ("2026-02-15", False),
    ("2026-02-17", False),
    ("2026-02-23", False),
    ("2026-02-24", True),
    ("2026-02-28", True),
    # 清明: Sat 04-04..Mon 04-06 off
    ("2026-04-03", True),
    ("2026-04-04", False),
    ("2026-04-06", False),
    ("2026-04-07", True),
    # 劳动节: 05-01..05-05 off, Saturday 05-09 a make-up workday
    ("2026-05-01", False),
    ("2026-05-05", False),
    ("2026-05-06", True),
    ("2026-05-09", True),
    ("2026-05-10", False),
    # 中秋 09-25..09-27 off, Sunday 09-20 a make-up workday
    ("2026-09-20", True),
    ("2026-09-25", False),
    # 国庆: 10-01..10-07 off (10-08 is a workday), Saturday 10-10 a make-up workday
    ("2026-09-30", True),
    ("2026-10-01", False),
    ("2026-10-07", False),
    ("2026-10-08", True),
    ("2026-10-10", True),
    ("2026-10-11", False),
    # an ordinary week
    ("2026-03-11", True),
    ("2026-03-14", False),
]


@pytest.mark.parametrize(("day", "workday"), OFFICIAL_2026)
def test_it_follows_the_official_2026_schedule(day: str, workday: bool) -> None:
    assert chinese_calendar.is_workday(D(day)) is workday  # the table is the library's truth
    assert WorkCalendar().is_workday(D(day)) is workday


def test_2026_has_official_data_and_2027_does_not() -> None:
    calendar = WorkCalendar()
    assert calendar.has_official_data(2026)
    assert not calendar.has_official_data(2027)
    assert not calendar.has_official_data(2003)


@pytest.mark.parametrize(
    ("day", "workday"),
    [
        ("2027-01-01", False),  # a Friday, but 元旦 is a day off by law every year
        ("2027-01-02", False),  # Saturday
        ("2027-02-05", False),  # Friday, 除夕 (春节 2027 is 02-06): off by law
        ("2027-02-08", False),  # Monday, 初三: off by law
        ("2027-02-09", True),  # Tuesday, 初四: the notice may bridge it; unknown, so a workday
        ("2027-04-05", False),  # Monday, 清明 (the solar term's day)
        ("2027-06-09", False),  # Wednesday, 端午
        ("2027-09-15", False),  # Wednesday, 中秋
        ("2027-10-04", True),  # Monday after 国庆's three statutory days
        ("2003-01-01", True),  # before the data starts, and before these rules
    ],
)
def test_a_year_without_data_is_monday_to_friday_less_the_statutory_holidays(
    day: str, workday: bool
) -> None:
    assert WorkCalendar().is_workday(D(day)) is workday


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_statutory_holidays_are_days_off_in_every_year_the_official_data_knows(
    year: int,
) -> None:
    days = statutory_days_off(year)
    assert len(days) == 13  # 1 + 4 + 1 + 2 + 1 + 1 + 3 days
    assert [d for d in sorted(days) if chinese_calendar.is_workday(d)] == []


def test_a_partial_table_overrides_date_by_date_and_keeps_the_holidays_it_leaves_out() -> None:
    """A hand-written 2027 table without 端午, 中秋 and 国庆 no longer makes them workdays."""
    table = {"2027": {"off": ["2027-01-01", "2027-02-05..2027-02-11"], "work": ["2027-02-20"]}}
    calendar = WorkCalendar(*parse_holiday_table(table))
    assert calendar.has_official_data(2027)
    for day in ("2027-06-09", "2027-09-15", "2027-10-01", "2027-02-08"):
        assert not calendar.is_workday(D(day)), day
    assert calendar.is_workday(D("2027-02-20"))  # the table's make-up Saturday
    assert calendar.is_workday(D("2027-06-08"))  # what nobody lists: Monday-Friday


def test_the_table_of_a_year_sets_the_december_before_over_installed_data_and_tables() -> None:
    """The notice for N sets days of December N-1: its table overrides N-1's, whether that year
    comes from the installed data or from its own table."""
    tables = {2027: {D("2026-12-31"): False, D("2027-01-01"): False}}
    calendar = WorkCalendar(tables=tables)
    assert chinese_calendar.is_workday(D("2026-12-31"))  # installed: a Thursday at work
    assert not calendar.is_workday(D("2026-12-31"))
    both = WorkCalendar(tables={2026: {D("2026-12-31"): True}, **tables})
    assert not both.is_workday(D("2026-12-31"))
    assert both.has_official_data(2026) and not WorkCalendar(tables=tables).has_official_data(2028)
    replaced = both.with_table(2027, {D("2027-01-01"): False})
    assert replaced.is_workday(D("2026-12-31"))  # the new 2027 table no longer lists it


def test_a_table_may_list_the_december_before_its_year() -> None:
    overrides, years = parse_holiday_table(
        {"2019": {"off": ["2018-12-30..2019-01-01"], "work": ["2018-12-29"]}}
    )
    assert years == {2019}
    assert overrides[D("2018-12-29")] is True and overrides[D("2018-12-31")] is False


TABLE_2027 = {
    "2027": {
        "off": ["2027-01-01..2027-01-03", "2027-02-06..2027-02-12"],
        "work": ["2027-02-20"],
    }
}


@pytest.mark.parametrize(
    ("day", "workday"),
    [
        ("2027-01-01", False),  # Friday, overridden off
        ("2027-02-08", False),  # Monday, overridden off
        ("2027-02-20", True),  # Saturday, overridden work
        ("2027-02-22", True),  # not in the table: Monday-Friday
        ("2027-02-21", False),
    ],
)
def test_a_2027_override_table_is_followed(day: str, workday: bool) -> None:
    overrides, years = parse_holiday_table(TABLE_2027)
    calendar = WorkCalendar(overrides, years)
    assert calendar.is_workday(D(day)) is workday
    assert calendar.has_official_data(2027)


def test_an_override_beats_the_builtin_data_date_by_date() -> None:
    calendar = WorkCalendar({D("2026-10-08"): False, D("2026-10-11"): True})
    assert not calendar.is_workday(D("2026-10-08"))
    assert calendar.is_workday(D("2026-10-11"))
    assert not calendar.is_workday(D("2026-10-07"))  # untouched: still the official holiday


def test_missing_years_names_only_the_years_without_data() -> None:
    calendar = WorkCalendar({}, {2028})
    days = [D("2026-05-01"), D("2027-05-01"), D("2027-06-01"), D("2028-01-01"), D("2029-01-01")]
    assert calendar.missing_years(days) == {2027, 2029}


@pytest.mark.parametrize(
    ("day", "policy", "expected"),
    [
        ("2026-10-03", "previous", "2026-09-30"),
        ("2026-10-03", "next", "2026-10-08"),
        ("2026-10-03", "ignore", "2026-10-03"),
        ("2026-10-08", "previous", "2026-10-08"),  # already a workday
        ("2026-10-08", "next", "2026-10-08"),
        ("2026-10-11", "previous", "2026-10-10"),  # make-up Saturday counts
        ("2026-02-20", "previous", "2026-02-14"),  # across 春节 to the make-up Saturday
        ("2026-02-20", "next", "2026-02-24"),
        ("2026-05-03", "next", "2026-05-06"),
    ],
)
def test_shift_moves_onto_the_nearest_workday(
    day: str, policy: WorkdayPolicy, expected: str
) -> None:
    assert WorkCalendar().shift(D(day), policy) == D(expected)


@pytest.mark.parametrize(
    ("day", "n", "expected"),
    [
        ("2026-10-08", 1, "2026-09-30"),  # across the whole National Day holiday
        ("2026-10-08", 3, "2026-09-28"),
        ("2026-10-08", 4, "2026-09-24"),  # and across 中秋 (09-25..09-27)
        ("2026-10-09", 1, "2026-10-08"),
        ("2026-10-01", 1, "2026-09-30"),
    ],
)
def test_nth_workday_before_skips_holidays(day: str, n: int, expected: str) -> None:
    assert WorkCalendar().nth_workday_before(D(day), n) == D(expected)


@pytest.mark.parametrize(
    ("day", "n", "expected"),
    [
        ("2026-09-30", 1, "2026-10-08"),
        ("2026-09-30", 3, "2026-10-10"),  # 10-08, 10-09, make-up Saturday 10-10
        ("2026-10-10", 1, "2026-10-12"),
        ("2026-12-31", 1, "2027-01-04"),  # into the guessed year: 元旦 by law, then a weekend
    ],
)
def test_nth_workday_after_skips_holidays(day: str, n: int, expected: str) -> None:
    assert WorkCalendar().nth_workday_after(D(day), n) == D(expected)


def test_nth_workday_needs_n_of_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WorkCalendar().nth_workday_before(D("2026-10-08"), 0)


def test_a_calendar_without_workdays_fails_instead_of_looping() -> None:
    table = {
        "2030": {"off": ["2030-01-01..2030-12-31"]},
        "2031": {"off": ["2031-01-01..2031-12-31"]},
    }
    calendar = WorkCalendar(*parse_holiday_table(table))
    with pytest.raises(ValueError, match="no workday within 366 days of 2030-06-01"):
        calendar.shift(D("2030-06-01"), "next")


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="'later' is not a workday policy"):
        WorkCalendar().shift(D("2026-10-01"), "later")  # type: ignore[arg-type]


def test_parse_holiday_table_expands_inclusive_ranges() -> None:
    overrides, years = parse_holiday_table(TABLE_2027)
    assert years == {2027}
    assert [d for d, workday in overrides.items() if not workday][:3] == [
        D("2027-01-01"),
        D("2027-01-02"),
        D("2027-01-03"),
    ]
    assert len(overrides) == 3 + 7 + 1
    assert overrides[D("2027-02-20")] is True


def test_parse_holiday_table_accepts_what_yaml_produces() -> None:
    # YAML reads an unquoted 2027: as an int and 2027-02-20 as a date
    table = {2027: {"off": "2027-01-01", "work": [D("2027-02-20")]}}
    overrides, years = parse_holiday_table(table)  # type: ignore[arg-type]
    assert years == {2027}
    assert overrides == {D("2027-01-01"): False, D("2027-02-20"): True}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"2027": {"off": ["2027-13-01"]}}, "'2027-13-01' is not a date"),
        ({"2027": {"off": ["2027-02-30"]}}, "'2027-02-30' is not a date"),
        ({"2027": {"off": ["27-1-1"]}}, "'27-1-1' is not a date"),
        ({"2027": {"off": ["2027-01-01..2027-1-3"]}}, "'2027-1-3' is not a date"),
        ({"2027": {"off": ["2026-11-30"]}}, "'2026-11-30' is not in year 2027 \\(nor in the De"),
        ({"2027": {"off": ["2027-12-31..2028-01-01"]}}, "is not in year 2027"),
        ({"2027": {"off": ["2027-01-03..2027-01-01"]}}, "ends before it starts"),
        ({"2027": {"holiday": ["2027-01-01"]}}, "'holiday' is not 'off' or 'work'"),
        ({"27": {"off": []}}, "'27' is not a year"),
        ({"2027": ["2027-01-01"]}, "expected 'off' and/or 'work'"),
        (
            {"2027": {"off": ["2027-01-01"], "work": ["2027-01-01"]}},
            "2027-01-01 is listed as both off and work",
        ),
    ],
)
def test_parse_holiday_table_names_the_bad_item(table: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_holiday_table(table)  # type: ignore[arg-type]

"""Properties of the date engine over random dates 2024-2028, triggers and policies."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    WholeMonth,
    lunar_spec,
    occurrences,
    parse_date,
    parse_duration,
    parse_grace,
    rrule_spec,
    send_day,
)
from notifier.dates.workdays import WorkCalendar, WorkdayPolicy, parse_holiday_table

PROPERTY = settings(max_examples=200, deadline=None)

# Official data for 2024-2026, a partial override table for 2027 (Spring Festival), and the
# Monday-Friday fallback for 2028: every source of truth is exercised.
CALENDAR = WorkCalendar(
    *parse_holiday_table(
        {"2027": {"off": ["2027-02-05..2027-02-11"], "work": ["2027-02-20", "2027-02-21"]}}
    )
)

days = st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31))
policies = st.sampled_from(["previous", "next", "ignore"])
day_units = st.sampled_from(["days", "weeks"])


@st.composite
def spans(draw: st.DrawFn) -> Occurrence:
    start = draw(days)
    return Occurrence(start, start + timedelta(days=draw(st.integers(0, 10))))


@st.composite
def windows(draw: st.DrawFn) -> tuple[date, date]:
    since = draw(days)
    return since, since + timedelta(days=draw(st.integers(0, 800)))


month_days = st.tuples(st.integers(1, 12), st.integers(1, 28))
specs: st.SearchStrategy[DateSpec] = st.one_of(
    month_days.map(lambda md: Annual(*md)),
    st.just(Annual(2, 29)),
    st.tuples(month_days, month_days).map(lambda p: AnnualSpan(*p[0], *p[1])),
    spans().map(lambda o: OneOff(o.start, o.end)),
    st.integers(1, 12).map(WholeMonth),
    st.tuples(st.integers(1, 12), st.integers(1, 30)).map(lambda md: Lunar(*md)),
    st.sampled_from(
        [
            rrule_spec("FREQ=YEARLY;BYMONTH=6;BYDAY=2SA"),
            rrule_spec("FREQ=MONTHLY;BYMONTHDAY=-1", duration_days=3),
            rrule_spec("DTSTART:20250301\nRRULE:FREQ=WEEKLY;BYDAY=MO;INTERVAL=2"),
        ]
    ),
)


@PROPERTY
@given(spans(), st.sampled_from(["before", "after"]), st.integers(0, 60), day_units, policies)
def test_a_day_trigger_lands_on_a_workday_unless_ignored(
    occurrence: Occurrence, kind: TriggerKind, n: int, unit: str, policy: WorkdayPolicy
) -> None:
    value = Duration(n, "days" if unit == "days" else "weeks")
    sent = send_day(occurrence, kind, value, policy, CALENDAR)
    if policy != "ignore":
        assert CALENDAR.is_workday(sent)
    else:
        offset = timedelta(days=n * (7 if unit == "weeks" else 1))
        assert sent == (occurrence.start - offset if kind == "before" else occurrence.end + offset)


@PROPERTY
@given(spans(), st.sampled_from(["start", "end"]), policies)
def test_an_on_trigger_lands_on_a_workday_unless_ignored(
    occurrence: Occurrence, value: TriggerValue, policy: WorkdayPolicy
) -> None:
    sent = send_day(occurrence, "on", value, policy, CALENDAR)
    assert CALENDAR.is_workday(sent) or policy == "ignore"


@PROPERTY
@given(spans(), st.sampled_from(["before", "after"]), st.integers(1, 30), policies)
def test_a_workday_trigger_always_lands_on_a_workday(
    occurrence: Occurrence, kind: TriggerKind, n: int, policy: WorkdayPolicy
) -> None:
    sent = send_day(occurrence, kind, Duration(n, "workdays"), policy, CALENDAR)
    assert CALENDAR.is_workday(sent)


@PROPERTY
@given(
    spans(),
    st.integers(0, 60),
    st.sampled_from(["days", "weeks", "workdays"]),
    policies,
)
def test_before_is_never_after_the_start_and_after_never_before_the_end(
    occurrence: Occurrence, n: int, unit: str, policy: WorkdayPolicy
) -> None:
    value = parse_duration(f"{n} {unit}")
    assert send_day(occurrence, "before", value, policy, CALENDAR) <= occurrence.start
    assert send_day(occurrence, "after", value, policy, CALENDAR) >= occurrence.end


def workdays_between(first: date, last: date) -> int:
    """Workdays strictly between two dates."""
    count, day = 0, first + timedelta(days=1)
    while day < last:
        count += CALENDAR.is_workday(day)
        day += timedelta(days=1)
    return count


@PROPERTY
@given(days, st.integers(1, 40))
def test_nth_workday_before_counts_exactly(day: date, n: int) -> None:
    found = CALENDAR.nth_workday_before(day, n)
    assert found < day
    assert CALENDAR.is_workday(found)
    assert workdays_between(found, day) == n - 1


@PROPERTY
@given(days, st.integers(1, 40))
def test_nth_workday_after_counts_exactly(day: date, n: int) -> None:
    found = CALENDAR.nth_workday_after(day, n)
    assert found > day
    assert CALENDAR.is_workday(found)
    assert workdays_between(day, found) == n - 1


@PROPERTY
@given(st.lists(specs, max_size=6), windows())
def test_occurrences_are_deterministic_sorted_unique_and_start_in_the_window(
    spec_list: list[DateSpec], window: tuple[date, date]
) -> None:
    since, until = window
    found = occurrences(spec_list, since, until)
    assert found == occurrences(list(reversed(spec_list)), since, until)
    assert found == sorted(set(found))
    for occurrence in found:
        assert since <= occurrence.start <= until
        assert occurrence.start <= occurrence.end


@PROPERTY
@given(st.lists(specs, min_size=1, max_size=4), windows(), st.integers(1, 400))
def test_occurrences_of_adjacent_windows_add_up(
    spec_list: list[DateSpec], window: tuple[date, date], cut: int
) -> None:
    # planning in two steps finds the same occurrences as planning once
    since, until = window
    middle = min(since + timedelta(days=cut), until)
    whole = occurrences(spec_list, since, until)
    parts = occurrences(spec_list, since, middle) + occurrences(
        spec_list, middle + timedelta(days=1), until
    )
    assert whole == parts


@pytest.mark.parametrize("parse", [parse_date, parse_duration, parse_grace, lunar_spec, rrule_spec])
@PROPERTY
@given(text=st.text())
def test_parsers_raise_nothing_but_value_error_on_random_text(parse: object, text: str) -> None:
    assert callable(parse)
    try:
        parse(text)
    except ValueError:
        pass


@PROPERTY
@given(st.from_regex(r"\A[0-9]{1,2}[-·.][0-9]{1,2}(\.\.[0-9]{1,2}-[0-9]{1,2})?\Z"))
def test_parse_date_raises_nothing_but_value_error_on_date_like_text(text: str) -> None:
    try:
        parse_date(text)
    except ValueError as error:
        assert str(error).startswith(f"'{text}'")

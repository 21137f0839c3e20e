"""The date engine: when an event happens, and on which day each reminder is sent.

Pure functions of their arguments (no clock, no I/O): the planner passes `since`/`until` and a
`WorkCalendar`, so a table of real dates is all the tests need.

Rules worth knowing (the README repeats them):
- Annual 02-29 occurs only in leap years; an annual span ending on 02-29 ends on 02-28 in
  other years.
- Lunar dates always mean the ordinary (non-leap) month: in 2025, which has a 闰六月, "06-15"
  is 六月十五 (2025-07-09), never 闰六月十五.
- Lunar day 30 in a month that has only 29 days means the last day of that month, day 29:
  "12-30" (除夕) is the last day of 腊月 every year, e.g. lunar 2025-12-30 -> 2026-02-16.
"""

from __future__ import annotations

import calendar as _calendar
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal, TypeAlias

from dateutil.rrule import rruleset, rrulestr
from lunar_python import LunarMonth, Solar

from notifier.constants import SHIFT_SLACK_DAYS
from notifier.dates.workdays import WorkCalendar, WorkdayPolicy

__all__ = [
    "MAX_DURATION_N",
    "SHIFT_SLACK_DAYS",
    "Annual",
    "AnnualSpan",
    "DateSpec",
    "Duration",
    "Lunar",
    "Occurrence",
    "OneOff",
    "RRuleSpec",
    "Trigger",
    "TriggerKind",
    "TriggerValue",
    "WholeMonth",
    "lead_margin",
    "lunar_spec",
    "month_spec",
    "occurrences",
    "parse_date",
    "parse_duration",
    "parse_grace",
    "rrule_spec",
    "send_day",
]

DurationUnit = Literal["days", "weeks", "workdays"]
TriggerKind = Literal["before", "on", "after"]

# A workday is at most 3 calendar days after the previous one in an ordinary week (Fri -> Mon);
# longer holiday blocks are covered by SHIFT_SLACK_DAYS.
_DAYS_PER_WORKDAY_BOUND = 3
# An RRULE's default DTSTART: early enough for any schedule. Rules without BY* parts repeat the
# DTSTART's month/day, so such rules should state their own DTSTART.
DEFAULT_RRULE_START = datetime(2000, 1, 1)
# Longest offset accepted: ten years. Anything larger is a typo, and would overflow `date`
# arithmetic at planning time instead of failing as a config error.
MAX_DURATION_N = 3660
_LEAP_YEAR = 2000  # to validate month/day pairs that exist in some year (02-29)


# --- durations ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Duration:
    """An offset from an anchor date: n calendar days, weeks, or workdays (n >= 0)."""

    n: int
    unit: DurationUnit

    def __post_init__(self) -> None:
        if not 0 <= self.n <= MAX_DURATION_N:
            raise ValueError(f"duration must be 0..{MAX_DURATION_N}, got {self.n}")
        if self.unit not in ("days", "weeks", "workdays"):
            raise ValueError(f"'{self.unit}' is not a duration unit")


TriggerValue: TypeAlias = Duration | Literal["start", "end"]
Trigger: TypeAlias = tuple[TriggerKind, TriggerValue]

_DURATION_UNITS: dict[str, DurationUnit] = {
    "d": "days",
    "day": "days",
    "days": "days",
    "天": "days",
    "日": "days",
    "w": "weeks",
    "week": "weeks",
    "weeks": "weeks",
    "周": "weeks",
    "星期": "weeks",
    "wd": "workdays",
    "workday": "workdays",
    "workdays": "workdays",
    "工作日": "workdays",
}
# "个" is the measure word of 3个工作日 / 2个星期; it adds nothing to the meaning.
_AMOUNT = re.compile(r"\s*([0-9]+)\s*(?:个\s*)?([^\s0-9]*)\s*")


def parse_duration(text: str | int) -> Duration:
    """Read "10 days", "10d", "10天", "2 weeks", "2w", "2周", "3 workdays", "3个工作日".

    A bare int means days (YAML `before: 10`). Raises ValueError "'x' is not a duration".
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if not 0 <= text <= MAX_DURATION_N:
            raise ValueError(f"'{text}' is not a duration")
        return Duration(text, "days")
    match = _AMOUNT.fullmatch(text) if isinstance(text, str) else None
    unit = _DURATION_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None or int(match.group(1)) > MAX_DURATION_N:
        raise ValueError(f"'{text}' is not a duration")
    return Duration(int(match.group(1)), unit)


_GRACE_UNITS: dict[str, timedelta] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds", "秒"), timedelta(seconds=1)),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes", "分钟"), timedelta(minutes=1)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours", "小时"), timedelta(hours=1)),
    **dict.fromkeys(("d", "day", "days", "天"), timedelta(days=1)),
    **dict.fromkeys(("w", "week", "weeks", "周"), timedelta(weeks=1)),
}


def parse_grace(text: str | int) -> timedelta:
    """Read a time span: "24h", "24 hours", "2 days", "30m", "30 minutes", "1d", "0".

    A number without a unit is accepted only when it is 0: "grace: 30" could mean seconds,
    minutes or days, and guessing wrong would silently send or drop late reminders.
    Raises ValueError "'x' is not a time span".
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text == 0:
            return timedelta(0)
        raise ValueError(f"'{text}' is not a time span")
    match = _AMOUNT.fullmatch(text) if isinstance(text, str) else None
    if match is not None:
        amount, unit = int(match.group(1)), match.group(2).lower()
        if unit == "" and amount == 0:
            return timedelta(0)
        if unit in _GRACE_UNITS:
            try:
                return amount * _GRACE_UNITS[unit]
            except OverflowError:
                pass
    raise ValueError(f"'{text}' is not a time span")


# --- date specs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Occurrence:
    """One happening of an event: an inclusive span; one-day events have start == end."""

    start: date
    end: date


@dataclass(frozen=True, slots=True)
class Annual:
    """The same month and day every year ("04-15"); 02-29 occurs only in leap years."""

    month: int
    day: int


@dataclass(frozen=True, slots=True)
class AnnualSpan:
    """A yearly span ("12-01..12-07"); an end before the start falls in the next year."""

    start_month: int
    start_day: int
    end_month: int
    end_day: int


@dataclass(frozen=True, slots=True)
class OneOff:
    """A single date or span that happens once ("2026-09-03", "2026-10-01..2026-10-07")."""

    start: date
    end: date


@dataclass(frozen=True, slots=True)
class WholeMonth:
    """A whole calendar month every year (e.g. 安全生产月, June): 1st to last day."""

    month: int


@dataclass(frozen=True, slots=True)
class Lunar:
    """A lunar (农历) month and day every lunar year; see the module docstring for the rules."""

    month: int
    day: int


@dataclass(frozen=True, slots=True)
class RRuleSpec:
    """An RFC 5545 recurrence; each occurrence lasts `duration_days` days."""

    rule: str
    duration_days: int = 1


DateSpec: TypeAlias = Annual | AnnualSpan | OneOff | WholeMonth | Lunar | RRuleSpec

# Month and day: "4-15", "4·15" (U+00B7 middle dot, or the katakana "・"), "4.15", "4月15日".
_MONTH_DAY = re.compile(
    r"([0-9]{1,2})\s*[-·・.]\s*([0-9]{1,2})|([0-9]{1,2})\s*月\s*([0-9]{1,2})\s*日?"
)
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _month_day(text: str, original: str) -> tuple[int, int]:
    """Parse one annual month/day and check it exists in some year (02-29 does)."""
    match = _MONTH_DAY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{original}' is not a date")
    month_text, day_text = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
    month, day = int(month_text), int(day_text)
    if not 1 <= month <= 12 or not 1 <= day <= _calendar.monthrange(_LEAP_YEAR, month)[1]:
        raise ValueError(f"'{original}' is not a date")
    return month, day


def _iso_day(text: str, original: str) -> date:
    text = text.strip()
    if _ISO_DAY.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"'{original}' is not a date")


def parse_date(text: str) -> DateSpec:
    """Parse one item of an event's `date:` key.

    Annual: "04-15", "4-15", "4·15" (also "4・15", "4.15"), "4月15日". Annual span "A..B" of
    those; when B is before A the span crosses the new year ("12-28..01-03"). One-off:
    "YYYY-MM-DD" or "YYYY-MM-DD..YYYY-MM-DD" (end >= start). Annual 02-29 is accepted and
    occurs only in leap years. Raises ValueError "'x' is not a date" (or a reversed range).
    """
    untyped: object = text  # straight from YAML: could be a number or a date object
    if not isinstance(untyped, str):
        raise ValueError(f"'{text}' is not a date")
    first, sep, last = text.strip().partition("..")
    if not sep:
        if _ISO_DAY.fullmatch(first.strip()):
            day = _iso_day(first, text)
            return OneOff(day, day)
        month, day_of_month = _month_day(first, text)
        return Annual(month, day_of_month)
    if _ISO_DAY.fullmatch(first.strip()) or _ISO_DAY.fullmatch(last.strip()):
        start, end = _iso_day(first, text), _iso_day(last, text)
        if end < start:
            raise ValueError(f"'{text}' ends before it starts")
        return OneOff(start, end)
    (m1, d1), (m2, d2) = _month_day(first, text), _month_day(last, text)
    return AnnualSpan(m1, d1, m2, d2)


def month_spec(month: int) -> WholeMonth:
    """A whole month every year; month must be 1..12."""
    untyped: object = month
    if isinstance(untyped, bool) or not isinstance(untyped, int) or not 1 <= untyped <= 12:
        raise ValueError(f"'{month}' is not a month (1..12)")
    return WholeMonth(month)


_LUNAR_MONTH_DAY = re.compile(r"([0-9]{1,2})-([0-9]{1,2})")


def lunar_spec(text: str) -> Lunar:
    """A lunar "MM-DD" (or "M-D"): month 1..12 (never a leap month), day 1..30."""
    untyped: object = text
    match = _LUNAR_MONTH_DAY.fullmatch(untyped.strip()) if isinstance(untyped, str) else None
    if match is None:
        raise ValueError(f"'{text}' is not a lunar date")
    month, day = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12 or not 1 <= day <= 30:
        raise ValueError(f"'{text}' is not a lunar date")
    return Lunar(month, day)


# Sub-daily rules would produce the same day many times and can explode in size; reminders are
# planned per day, so they are refused up front.
_SUB_DAILY = {"HOURLY", "MINUTELY", "SECONDLY"}


def _normalise_rrule(rule: str) -> str:
    lines = [line.strip() for line in rule.strip().splitlines() if line.strip()]
    return "\n".join(
        f"RRULE:{line}" if line.upper().startswith("FREQ=") else line for line in lines
    )


def rrule_spec(rule: str, duration_days: int = 1) -> RRuleSpec:
    """An RFC 5545 RRULE ("FREQ=YEARLY;BYMONTH=6;BYDAY=2SA"), with or without "RRULE:", and
    optionally a "DTSTART:YYYYMMDD" line (default 2000-01-01).

    Validated now so that a bad rule is a config error, not a failure at planning time:
    ValueError with dateutil's message, for sub-daily frequencies, for timezone-aware
    DTSTART/UNTIL (dates here are local calendar days), and for duration_days < 1.
    """
    days: object = duration_days
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"duration_days must be a positive integer, got {duration_days!r}")
    untyped: object = rule
    if not isinstance(untyped, str):
        raise ValueError(f"'{rule}' is not an RRULE")
    text = _normalise_rrule(rule)
    for freq in re.findall(r"FREQ\s*=\s*([A-Za-z]*)", text, flags=re.IGNORECASE):
        if freq.upper() in _SUB_DAILY:
            raise ValueError(f"'{rule}': FREQ={freq} is finer than a day (use DAILY or coarser)")
    compiled = _compile_rrule(text)
    try:
        compiled.between(DEFAULT_RRULE_START, DEFAULT_RRULE_START + timedelta(days=1))
    except TypeError as exc:  # naive window vs aware DTSTART
        raise ValueError(f"'{rule}': timezone-aware DTSTART is not supported") from exc
    return RRuleSpec(text, duration_days)


@lru_cache(maxsize=1024)
def _compile_rrule(text: str) -> rruleset:
    try:
        return rrulestr(text, dtstart=DEFAULT_RRULE_START, forceset=True, cache=True)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # dateutil's parser raises more than ValueError on malformed text.
        raise ValueError(f"'{text}' is not a valid RRULE: {exc}") from exc


# --- occurrences -------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _lunar_month_start(year: int, month: int) -> tuple[date, int]:
    """Solar date of day 1 of the non-leap lunar `month` of lunar `year`, and its day count."""
    lunar_month = LunarMonth.fromYm(year, month)  # positive month: the non-leap one
    solar = Solar.fromJulianDay(lunar_month.getFirstJulianDay())
    first = date(int(solar.getYear()), int(solar.getMonth()), int(solar.getDay()))
    return first, int(lunar_month.getDayCount())


def _lunar_to_solar(year: int, month: int, day: int) -> date:
    """Lunar year/month/day to a solar date; day 30 of a 29-day month is its day 29."""
    first, day_count = _lunar_month_start(year, month)
    return first + timedelta(days=min(day, day_count) - 1)


def _years(since: date, until: date) -> range:
    return range(since.year, until.year + 1)


def _safe_date(year: int, month: int, day: int) -> date | None:
    """The date, or None for 02-29 in a common year (or a year outside date's range)."""
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _last_day(year: int, month: int) -> date:
    return date(year, month, _calendar.monthrange(year, month)[1])


def _spec_occurrences(spec: DateSpec, since: date, until: date) -> Iterator[Occurrence]:
    if isinstance(spec, Annual):
        for year in _years(since, until):
            day = _safe_date(year, spec.month, spec.day)
            if day is not None:
                yield Occurrence(day, day)
    elif isinstance(spec, AnnualSpan):
        crosses = (spec.end_month, spec.end_day) < (spec.start_month, spec.start_day)
        for year in _years(since, until):
            start = _safe_date(year, spec.start_month, spec.start_day)
            if start is None:
                continue
            end_year = year + 1 if crosses else year
            end = _safe_date(end_year, spec.end_month, spec.end_day)
            if end is None:  # 02-29 in a common year: the last day of February
                end = _safe_date(end_year, spec.end_month, spec.end_day - 1)
            yield Occurrence(start, end if end is not None else date.max)
    elif isinstance(spec, OneOff):
        yield Occurrence(spec.start, spec.end)
    elif isinstance(spec, WholeMonth):
        for year in _years(since, until):
            yield Occurrence(date(year, spec.month, 1), _last_day(year, spec.month))
    elif isinstance(spec, Lunar):
        # 腊月 of lunar year Y falls in January/February of solar year Y+1: start a year early.
        for year in range(max(since.year - 1, 1), until.year + 1):
            day = _lunar_to_solar(year, spec.month, spec.day)
            yield Occurrence(day, day)
    else:
        lasting = timedelta(days=spec.duration_days - 1)
        window_end = datetime.combine(until, time.max)
        for moment in _compile_rrule(spec.rule).between(
            datetime.combine(since, time.min), window_end, inc=True
        ):
            start = moment.date()
            yield Occurrence(start, start + lasting)


def occurrences(specs: Sequence[DateSpec], since: date, until: date) -> list[Occurrence]:
    """Every occurrence whose start lies in [since, until], sorted and without duplicates.

    An occurrence that started before `since` is not returned even if it is still running:
    the planner widens the window by `lead_margin` to catch reminders sent after the start.
    """
    found = {
        occurrence
        for spec in specs
        for occurrence in _spec_occurrences(spec, since, until)
        if since <= occurrence.start <= until
    }
    return sorted(found)


# --- send days ---------------------------------------------------------------------------------


def _calendar_days(value: Duration) -> timedelta:
    return timedelta(days=value.n * 7 if value.unit == "weeks" else value.n)


def send_day(
    occurrence: Occurrence,
    kind: TriggerKind,
    value: Duration | Literal["start", "end"],
    policy: WorkdayPolicy,
    calendar: WorkCalendar,
) -> date:
    """The day a reminder for `occurrence` goes out.

    - before N days/weeks: start - N, then moved onto a workday by `policy`;
    - after N days/weeks: end + N, then moved by `policy`;
    - on start / on end: that day, moved by `policy`;
    - before N workdays: the N-th workday strictly before the start; after N workdays: the N-th
      workday strictly after the end. Already a workday, so `policy` does not apply; N = 0
      means the anchor itself, moved by `policy`.
    A "before" reminder is never sent after the start, nor an "after" one before the end: when
    the policy shift would cross the anchor (e.g. "before 1 day" of 10-03 lands in the National
    Day holiday and `next` would give 10-08), the shift goes the other way instead.
    Raises ValueError for a kind/value mismatch ("on" takes start/end, before/after a Duration).
    """
    if kind == "on":
        if value == "start":
            return calendar.shift(occurrence.start, policy)
        if value == "end":
            return calendar.shift(occurrence.end, policy)
        raise ValueError(f"'on' takes 'start' or 'end', not {value!r}")
    if not isinstance(value, Duration):
        raise ValueError(f"'{kind}' takes a duration, not {value!r}")
    if kind == "before":
        anchor = occurrence.start
        if value.unit == "workdays" and value.n > 0:
            return calendar.nth_workday_before(anchor, value.n)
        day = anchor - _calendar_days(value)
        shifted = calendar.shift(day, policy)
        return shifted if shifted <= anchor else calendar.shift(day, "previous")
    if kind == "after":
        anchor = occurrence.end
        if value.unit == "workdays" and value.n > 0:
            return calendar.nth_workday_after(anchor, value.n)
        day = anchor + _calendar_days(value)
        shifted = calendar.shift(day, policy)
        return shifted if shifted >= anchor else calendar.shift(day, "next")
    raise ValueError(f"'{kind}' is not before, on or after")


def lead_margin(value: Duration | Literal["start", "end"]) -> int:
    """Calendar days a trigger can reach from its anchor, to widen a planning window safely.

    Days: n, weeks: 7n, workdays: 3n (Friday -> Monday is the widest ordinary gap), each plus
    SHIFT_SLACK_DAYS for a policy shift across a holiday block (or a holiday block inside a
    workday count). Generous on purpose: a wider window only costs a few extra dates.
    """
    if not isinstance(value, Duration):
        return SHIFT_SLACK_DAYS
    if value.unit == "workdays":
        return value.n * _DAYS_PER_WORKDAY_BOUND + SHIFT_SLACK_DAYS
    return _calendar_days(value).days + SHIFT_SLACK_DAYS

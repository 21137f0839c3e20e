"""Which days are workdays in mainland China: official data, config overrides, a fallback.

`chinese_calendar` carries the State Council holiday schedule, but only for the years its release
knows (2004-2026 in 1.11.0); each new year's schedule is published in November and reaches the
library later. So a schedule file may carry its own `holidays:` tables.

One rule for every day: a `holidays:` table overrides date by date; what no table lists comes
from the installed official data where it covers the year, else from the guess: Monday-Friday
less the days off the law fixes (元旦, 春节, 清明, 劳动节, 端午, 中秋, 国庆). So a table that
leaves out a holiday never makes it a workday again. The table of year N may also list days of
December N-1 (the notice for N sets them, e.g. 2018-12-29..31 by the 2019 notice): they override
year N-1's days, installed or from its own table, date by date. `missing_years` lets `notifier
check` warn about the guess instead of silently trusting it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

import chinese_calendar
from lunar_python import Lunar, Solar

__all__ = [
    "MAX_SEARCH_DAYS",
    "OFFICIAL_DATA",
    "Probe",
    "WorkCalendar",
    "WorkdayPolicy",
    "YearSource",
    "parse_holiday_table",
    "parse_holiday_tables",
    "statutory_days_off",
    "statutory_holidays",
    "year_source",
]

WorkdayPolicy = Literal["previous", "next", "ignore"]

# No real calendar has a year without workdays; an override table that says so is a config
# mistake, and this bound turns it into a ValueError instead of an endless loop.
MAX_SEARCH_DAYS = 366

_ONE_DAY = timedelta(days=1)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TABLE_KINDS = {"off": False, "work": True}


@lru_cache(maxsize=32_768)  # about 90 years of days: every lookup a planner can make
def _builtin_workday(day: date) -> bool | None:
    """The library's verdict, or None when it has no data for that year."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return None


# The law (全国年节及纪念日放假办法, as revised in 2024) fixes these from 2025 on; each year's
# notice adds bridge days and make-up workdays around them, but never works one of them.
STATUTORY_SINCE = 2025


# The installed official data, as said to users: "chinese-calendar 1.11.0".
OFFICIAL_DATA = f"chinese-calendar {getattr(chinese_calendar, '__version__', '?')}"


@lru_cache(maxsize=256)
def statutory_holidays(year: int) -> dict[date, str]:
    """The days off the law fixes in `year`, each with its holiday: 元旦 (1), 春节 (除夕 to 初三,
    4), 清明节 (the solar term's day), 劳动节 (05-01, 05-02), 端午节 (五月初五), 中秋节 (八月十五),
    国庆节 (10-01..10-03). Empty before STATUTORY_SINCE (other rules applied; the built-in data
    covers those years). A copy: callers may not change the cached dict."""
    if year < STATUTORY_SINCE:
        return {}
    new_year = _solar(Lunar.fromYmd(year, 1, 1).getSolar())
    days = {date(year, 1, 1): "元旦"}
    days |= dict.fromkeys((new_year + timedelta(days=n) for n in range(-1, 3)), "春节")
    days[_solar(Lunar.fromYmd(year, 3, 1).getJieQiTable()["清明"])] = "清明节"
    days |= dict.fromkeys((date(year, 5, 1), date(year, 5, 2)), "劳动节")
    days[_solar(Lunar.fromYmd(year, 5, 5).getSolar())] = "端午节"  # never the leap month
    days[_solar(Lunar.fromYmd(year, 8, 15).getSolar())] = "中秋节"
    days |= dict.fromkeys((date(year, 10, d) for d in (1, 2, 3)), "国庆节")
    return dict(sorted(days.items()))


@lru_cache(maxsize=256)
def statutory_days_off(year: int) -> frozenset[date]:
    """The days of `statutory_holidays`: what a year without the notice can be sure of, so its
    guess (暂定) is Monday-Friday less these, rather than Monday-Friday alone."""
    return frozenset(statutory_holidays(year))


def _solar(day: Solar) -> date:
    return date(day.getYear(), day.getMonth(), day.getDay())


@lru_cache(maxsize=512)
def _builtin_year(year: int) -> bool:
    # Probe a mid-year day: coverage is whole years, and January 1st of year 1 is no edge case.
    return _builtin_workday(date(year, 6, 1)) is not None


def merge_tables(tables: Mapping[int, Mapping[date, bool]]) -> dict[date, bool]:
    """The tables date by date; where two list the same day (only December: the table of year
    N may list days of December N-1), the later year's wins: the notice for N sets them."""
    merged: dict[date, bool] = {}
    for year in sorted(tables):
        merged.update(tables[year])
    return merged


class WorkCalendar:
    """Workdays from overrides, then the built-in official data, then Monday-Friday less the
    statutory holidays (a year nobody describes: the guess).

    `overrides` maps a date to True (a workday, e.g. a 调休 make-up Saturday) or False (a day
    off). `tables` are the config's `holidays:` tables by year, merged over `overrides` (a
    later year's table winning on a shared December day). `override_years`, and the years of
    `tables`, count as having official data; their days no table lists come from the built-in
    data where it covers the year, else from Monday-Friday less the statutory holidays: date by
    date, a table never makes a statutory holiday a workday by leaving it out.
    Lookups are cached per instance: build one calendar per config load and share it.
    """

    def __init__(
        self,
        overrides: Mapping[date, bool] | None = None,
        override_years: Collection[int] = (),
        *,
        tables: Mapping[int, Mapping[date, bool]] | None = None,
    ) -> None:
        self._loose: dict[date, bool] = dict(overrides or {})
        self._loose_years = frozenset(override_years)
        self._tables = {year: dict(days) for year, days in (tables or {}).items()}
        self._overrides = {**self._loose, **merge_tables(self._tables)}
        self._override_years = self._loose_years | frozenset(self._tables)
        self._cache: dict[date, bool] = {}

    def is_workday(self, day: date) -> bool:
        """True if offices are open on `day`."""
        cached = self._cache.get(day)
        if cached is not None:
            return cached
        verdict = self._overrides.get(day)
        if verdict is None:
            verdict = _builtin_workday(day)
        if verdict is None:
            # Date by date: a table's year still keeps the holidays the law fixes.
            verdict = day.weekday() < 5 and day not in statutory_days_off(day.year)
        self._cache[day] = verdict
        return verdict

    @property
    def overrides(self) -> Mapping[date, bool]:
        """The config's `holidays:` tables, date by date (read-only; for display)."""
        return dict(self._overrides)

    def has_official_data(self, year: int) -> bool:
        """True if `year` is covered by the built-in data or described by the config."""
        return year in self._override_years or _builtin_year(year)

    @property
    def tables(self) -> Mapping[int, Mapping[date, bool]]:
        """The config's `holidays:` tables by year (read-only)."""
        return dict(self._tables)

    def with_table(self, year: int, days: Mapping[date, bool]) -> WorkCalendar:
        """This calendar with `days` as the table of `year` (an imported notice's table
        replacing any table the config had for that year): what it would be once saved."""
        loose = {d: w for d, w in self._loose.items() if d.year != year}
        return WorkCalendar(loose, self._loose_years, tables={**self._tables, year: days})

    def probe(self) -> Probe:
        """A view that records which unknown years the lookups through it touched."""
        return Probe(self)

    def missing_years(self, days: Iterable[date]) -> set[int]:
        """The years among `days` whose workdays are only guessed (Monday-Friday less the
        statutory holidays)."""
        return {year for year in {day.year for day in days} if not self.has_official_data(year)}

    def shift(self, day: date, policy: WorkdayPolicy) -> date:
        """Move `day` onto a workday: the nearest one at or before (`previous`), at or after
        (`next`), or leave it alone (`ignore`).

        Raises ValueError for an unknown policy or when no workday lies within a year.
        """
        if policy == "ignore":
            return day
        if policy == "previous":
            return self._walk(day, -_ONE_DAY, inclusive=True)
        if policy == "next":
            return self._walk(day, _ONE_DAY, inclusive=True)
        raise ValueError(f"'{policy}' is not a workday policy (previous, next, ignore)")

    def nth_workday_before(self, day: date, n: int) -> date:
        """The n-th workday strictly before `day` (n >= 1): n=1 is the last workday before."""
        return self._nth(day, n, -_ONE_DAY)

    def nth_workday_after(self, day: date, n: int) -> date:
        """The n-th workday strictly after `day` (n >= 1)."""
        return self._nth(day, n, _ONE_DAY)

    def _nth(self, day: date, n: int, step: timedelta) -> date:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        for _ in range(n):
            day = self._walk(day, step, inclusive=False)
        return day

    def _walk(self, day: date, step: timedelta, *, inclusive: bool) -> date:
        """The first workday from `day` in direction `step`, at most MAX_SEARCH_DAYS away."""
        origin = day
        if not inclusive:
            day = _step(day, step)
        for _ in range(MAX_SEARCH_DAYS):
            if self.is_workday(day):
                return day
            day = _step(day, step)
        raise ValueError(f"no workday within {MAX_SEARCH_DAYS} days of {origin}")


class Probe(WorkCalendar):
    """A view of a calendar that notes the years it was asked about without official data.

    What a send day was computed from is what the date engine looked up: a send is
    provisional (暂定) when one of those days lies in a year nobody has described yet.
    """

    def __init__(self, base: WorkCalendar) -> None:  # no super(): it only delegates
        self._base = base
        self._known: dict[int, bool] = {}
        self.unknown_years: set[int] = set()

    def is_workday(self, day: date) -> bool:
        known = self._known.get(day.year)
        if known is None:
            known = self._known[day.year] = self._base.has_official_data(day.year)
        if not known:
            self.unknown_years.add(day.year)
        return self._base.is_workday(day)

    def has_official_data(self, year: int) -> bool:
        return self._base.has_official_data(year)


def _step(day: date, step: timedelta) -> date:
    try:
        return day + step
    except OverflowError:
        raise ValueError(f"no workday found before the calendar ends at {day}") from None


def parse_holiday_table(
    table: Mapping[str, Mapping[str, Sequence[str | date]]],
) -> tuple[dict[date, bool], set[int]]:
    """Read a schedule's `holidays:` block into (overrides, override_years) for WorkCalendar:
    `parse_holiday_tables`, merged."""
    tables = parse_holiday_tables(table)
    return merge_tables(tables), set(tables)


def parse_holiday_tables(
    table: Mapping[str, Mapping[str, Sequence[str | date]]],
) -> dict[int, dict[date, bool]]:
    """Read a schedule's `holidays:` block into its tables by year.

    Shape: `{"2027": {"off": ["2027-01-01..2027-01-03", "2027-02-10"], "work": ["2027-02-20"]}}`;
    "A..B" ranges are inclusive. The table of year N may list days of December N-1 (the notice
    for N sets them). YAML turns an unquoted `2027:` into an int and `2027-02-10` into a date, so
    both are accepted too. Raises ValueError naming the bad item: not a date, a date outside its
    year key (and the December before), a reversed range, an unknown kind, or a date both off
    and work.
    """
    tables: dict[int, dict[date, bool]] = {}
    for raw_year, kinds in table.items():
        year_text = str(raw_year)
        if not re.fullmatch(r"\d{4}", year_text):
            raise ValueError(f"'{year_text}' is not a year")
        year = int(year_text)
        overrides = tables.setdefault(year, {})
        untyped: object = kinds  # straight from YAML: the annotation is a hope, not a fact
        if not isinstance(untyped, Mapping):
            raise ValueError(f"{year}: expected 'off' and/or 'work' lists")
        for kind, items in untyped.items():
            if kind not in _TABLE_KINDS:
                raise ValueError(f"{year}: '{kind}' is not 'off' or 'work'")
            workday = _TABLE_KINDS[kind]
            if isinstance(items, str | date):
                items = [items]
            elif not isinstance(items, Sequence):
                raise ValueError(f"{year}: {kind}: expected a list of dates")
            for item in items:
                for day in _expand_item(item):
                    if not date(year - 1, 12, 1) <= day <= date(year, 12, 31):
                        raise ValueError(
                            f"'{item}' is not in year {year} (nor in the December before it, "
                            f"which the notice for {year} may set)"
                        )
                    if overrides.get(day, workday) != workday:
                        raise ValueError(f"{day} is listed as both off and work")
                    overrides[day] = workday
    return tables


def _expand_item(item: object) -> list[date]:
    """One table item: a date, "YYYY-MM-DD" or an inclusive range "YYYY-MM-DD..YYYY-MM-DD"."""
    if isinstance(item, date):
        return [item]
    if not isinstance(item, str):
        raise ValueError(f"'{item}' is not a date")
    first, sep, last = item.partition("..")
    start = _table_date(first.strip(), item)
    end = _table_date(last.strip(), item) if sep else start
    if end < start:
        raise ValueError(f"'{item}' ends before it starts")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _table_date(text: str, item: str) -> date:
    if _ISO_DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    bad = text if text else item
    raise ValueError(f"'{bad}' is not a date")


YearKind = Literal["official", "config", "provisional"]


@dataclass(frozen=True, slots=True)
class YearSource:
    """Where a year's workdays come from, said plainly at start, in `check` and the console."""

    year: int
    kind: YearKind  # the installed data; a config table alone; the guess
    table: str | None = None  # the file of the year's `holidays:` table, if any

    def in_words(self) -> str:
        if self.kind == "official":
            text = f"官方数据 official ({OFFICIAL_DATA})"
            if self.table:
                text += f" + 配置表逐日覆盖 table {self.table}, date by date"
            return text
        if self.kind == "config":
            return f"配置表 config table ({self.table or '?'})"
        return (
            "暂定 provisional (周一至周五，除去法定节假日 Monday-Friday less the statutory "
            "holidays; 调休未知 make-up workdays unknown)"
        )


def year_source(
    year: int, calendar: WorkCalendar, files: Mapping[int, object] | None = None
) -> YearSource:
    """Where `year`'s workdays come from; `files` names the file of each year's table."""
    file = (files or {}).get(year)
    table = str(file) if file is not None else None
    if _builtin_year(year):
        return YearSource(year, "official", table)
    if calendar.has_official_data(year):
        return YearSource(year, "config", table)
    return YearSource(year, "provisional")

"""Dates in words, for people: an event's rule ("每年4月15日"), why a reminder moved
("4月4日至6日清明节放假，提前至4月3日") and where a year's workday data comes from.

Pure: every function takes the dates and the `WorkCalendar` it talks about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

import chinese_calendar
from chinese_calendar.constants import Holiday

from notifier.dates.rules import (
    Annual,
    AnnualSpan,
    DateSpec,
    Duration,
    Lunar,
    Occurrence,
    OneOff,
    RRuleSpec,
    WholeMonth,
)
from notifier.dates.workdays import WorkCalendar, year_source
from notifier.schedule.model import Reminder

__all__ = [
    "HolidayBlock",
    "WorkdaySource",
    "lunar_day_name",
    "move_reason",
    "nominal_day",
    "off_block",
    "rule_in_words",
    "span_in_words",
    "workday_source",
]

WorkdaySource = Literal["official", "config", "provisional"]

LUNAR_MONTHS = ("正", "二", "三", "四", "五", "六", "七", "八", "九", "十", "冬", "腊")
_DIGITS = "一二三四五六七八九十"
WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
_RRULE_DAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
# The library's names are short forms; the notice and staff say 清明节, 端午节, 中秋节.
_HOLIDAY_NAMES = {"清明": "清明节", "端午": "端午节", "中秋": "中秋节"}
_HOLIDAY_BY_VALUE = {h.value: h for h in Holiday}
# A block of days off longer than this is not a holiday but a config mistake; stop looking.
MAX_BLOCK_DAYS = 31


def _cn_number(n: int) -> str:
    if n <= 10:
        return _DIGITS[n - 1]
    if n < 20:
        return "十" + _DIGITS[n - 11]
    tens, ones = divmod(n, 10)
    return _DIGITS[tens - 1] + "十" + (_DIGITS[ones - 1] if ones else "")


def lunar_day_name(day: int) -> str:
    """初一..初十, 十一..十九, 二十, 廿一..廿九, 三十."""
    if day <= 10:
        return "初" + _DIGITS[day - 1]
    if day < 20:
        return "十" + _DIGITS[day - 11]
    if day == 20:
        return "二十"
    if day < 30:
        return "廿" + _DIGITS[day - 21]
    return "三十"


def _md(month: int, day: int) -> str:
    return f"{month}月{day}日"


def span_in_words(start: date, end: date, *, year: bool = False) -> str:
    """ "4月4日至6日", "4月30日至5月5日", "4月15日"; with `year`, the year in front."""
    prefix = f"{start.year}年" if year else ""
    if start == end:
        return prefix + _md(start.month, start.day)
    if (start.year, start.month) == (end.year, end.month):
        return f"{prefix}{_md(start.month, start.day)}至{end.day}日"
    tail = f"{end.year}年" if year and end.year != start.year else ""
    return f"{prefix}{_md(start.month, start.day)}至{tail}{_md(end.month, end.day)}"


def _ordinal_weekday(n: int, weekday: int) -> str:
    if n == -1:
        return f"最后一个{WEEKDAYS[weekday]}"
    if n < 0:
        return f"倒数第{_cn_number(-n)}个{WEEKDAYS[weekday]}"
    return f"第{_cn_number(n)}个{WEEKDAYS[weekday]}"


def _rrule_in_words(rule: str) -> str:
    """Common RRULEs in words; anything else is shown as written (never wrong, just terse)."""
    parts: dict[str, str] = {}
    for line in rule.upper().splitlines():
        if line.startswith("DTSTART"):
            continue
        for item in line.removeprefix("RRULE:").split(";"):
            key, _, value = item.partition("=")
            if key:
                parts[key.strip()] = value.strip()
    freq = parts.pop("FREQ", "")
    interval = int(parts.pop("INTERVAL", "1") or 1)
    months = [int(m) for m in parts.pop("BYMONTH", "").split(",") if m]
    days = parts.pop("BYDAY", "")
    monthdays = [int(d) for d in parts.pop("BYMONTHDAY", "").split(",") if d]
    setpos = parts.pop("BYSETPOS", "")
    parts.pop("WKST", None)
    as_written = f"按规则 {rule.removeprefix('RRULE:')}"
    if parts or freq not in ("YEARLY", "MONTHLY", "WEEKLY"):
        return as_written
    day_terms: list[str] = []
    for term in filter(None, days.split(",")):
        m = re.fullmatch(r"([+-]?\d+)?(MO|TU|WE|TH|FR|SA|SU)", term)
        if m is None:
            return as_written
        n = int(m.group(1)) if m.group(1) else (int(setpos) if setpos.lstrip("+-").isdigit() else 0)
        wd = _RRULE_DAYS[m.group(2)]
        day_terms.append(_ordinal_weekday(n, wd) if n else WEEKDAYS[wd])
    if setpos and len(days.split(",")) != 1:
        return as_written
    day_text = "、".join(day_terms) + "、".join(f"{d}日" for d in monthdays)
    if freq == "WEEKLY":
        every = "每周" if interval == 1 else f"每{_cn_number(interval)}周"
        return every + (day_text or "")
    if months == [3, 6, 9, 12]:
        every = "每季度末月"
    elif months == [1, 4, 7, 10]:
        every = "每季度首月"
    elif months:
        every = "每年" + "、".join(f"{m}月" for m in months)
    elif freq == "YEARLY":
        every = "每年"
    else:
        every = "每月" if interval == 1 else f"每{_cn_number(interval)}个月"
    return every + (day_text or "")


@lru_cache(maxsize=4096)  # specs are frozen values; the events page asks for each often
def rule_in_words(spec: DateSpec) -> str:
    """One date spec in words: 每年4月15日, 每年农历正月初一, 每季度末月第三个星期四."""
    if isinstance(spec, Annual):
        return "每年" + _md(spec.month, spec.day)
    if isinstance(spec, AnnualSpan):
        start = _md(spec.start_month, spec.start_day)
        if spec.start_month == spec.end_month and spec.end_day >= spec.start_day:
            return f"每年{start}至{spec.end_day}日"
        crosses = (spec.end_month, spec.end_day) < (spec.start_month, spec.start_day)
        return f"每年{start}至{'次年' if crosses else ''}{_md(spec.end_month, spec.end_day)}"
    if isinstance(spec, OneOff):
        return span_in_words(spec.start, spec.end, year=True) + "（一次）"
    if isinstance(spec, WholeMonth):
        return f"每年{spec.month}月（整月）"
    if isinstance(spec, Lunar):
        return f"每年农历{LUNAR_MONTHS[spec.month - 1]}月{lunar_day_name(spec.day)}"
    assert isinstance(spec, RRuleSpec)
    text = _rrule_in_words(spec.rule)
    if spec.duration_days > 1:
        text += f"，持续{spec.duration_days}天"
    return text


# --- why a reminder moved ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HolidayBlock:
    """A run of days off around a day, and the holiday it belongs to, if any."""

    start: date
    end: date
    holiday: str | None  # 清明节, 春节, ...; None for an ordinary weekend or a table's day off

    def in_words(self) -> str:
        span = span_in_words(self.start, self.end)
        if self.holiday:
            return f"{span}{self.holiday}放假"
        if self.start == self.end:
            return f"{span}是{WEEKDAYS[self.start.weekday()]}"
        if all(d.weekday() >= 5 for d in _days(self.start, self.end)):
            return f"{span}是周末"
        return f"{span}放假"


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@lru_cache(maxsize=8192)  # a fact of the built-in data: the same for every caller
def holiday_name(day: date) -> str | None:
    """The official holiday `day` belongs to (清明节), None if none or no data for its year."""
    try:
        _, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return None
    holiday = _HOLIDAY_BY_VALUE.get(name) if name else None
    if holiday is None:
        return None
    chinese = str(holiday.chinese)
    return _HOLIDAY_NAMES.get(chinese, chinese)


def off_block(day: date, calendar: WorkCalendar) -> HolidayBlock | None:
    """The days off around `day` (None if it is a workday)."""
    if calendar.is_workday(day):
        return None
    start = end = day
    for _ in range(MAX_BLOCK_DAYS):
        if calendar.is_workday(start - timedelta(days=1)):
            break
        start -= timedelta(days=1)
    for _ in range(MAX_BLOCK_DAYS):
        if calendar.is_workday(end + timedelta(days=1)):
            break
        end += timedelta(days=1)
    names = [n for n in (holiday_name(d) for d in _days(start, end)) if n]
    return HolidayBlock(start, end, names[0] if names else None)


def nominal_day(occurrence: Occurrence, reminder: Reminder) -> date | None:
    """The day a reminder would go out without the workday rule; None for workday counts."""
    value = reminder.value
    if isinstance(value, str):
        return occurrence.start if value == "start" else occurrence.end
    assert isinstance(value, Duration)
    if value.unit == "workdays" and value.n > 0:
        return None
    delta = timedelta(days=value.n * 7 if value.unit == "weeks" else value.n)
    return occurrence.start - delta if reminder.kind == "before" else occurrence.end + delta


def _every_nominal(occurrence: Occurrence, reminder: Reminder, sent: date) -> date | None:
    """The cadence day an `every:` send was moved from; None if it was not moved.

    `every: workday` sends only on workdays, so it never moves. Other cadences step from the
    start (start, start + n, ...): `workdays: next` moves a day forward, so a moved send comes
    from the step before it; `previous` from the step after (unless that leaves the span, where
    the shift turned the other way).
    """
    cadence = reminder.every
    if cadence is None or cadence.unit == "workday":
        return None
    offset = (sent - occurrence.start).days
    if offset % cadence.n == 0:
        return None
    below = occurrence.start + timedelta(days=offset - offset % cadence.n)
    above = below + timedelta(days=cadence.n)
    if reminder.workdays == "next":
        return below
    return above if above <= occurrence.end else below


def move_reason(
    occurrence: Occurrence, reminder: Reminder, sent: date, calendar: WorkCalendar
) -> str | None:
    """Why the reminder goes out on `sent` rather than on its nominal day; None if it does not
    move. "4月4日至6日清明节放假，提前至4月3日"; for workday counts, the holidays skipped."""
    if reminder.every is not None:
        nominal = _every_nominal(occurrence, reminder, sent)
        if nominal is None:
            return None
    else:
        nominal = nominal_day(occurrence, reminder)
    if nominal is None:
        anchor = occurrence.start if reminder.kind == "before" else occurrence.end
        low, high = sorted((anchor, sent))
        blocks: list[HolidayBlock] = []
        day = low + timedelta(days=1)
        while day < high:
            block = off_block(day, calendar)
            if block is not None:
                if block.holiday:
                    blocks.append(block)
                day = block.end
            day += timedelta(days=1)
        if not blocks:
            return None
        skipped = "、".join(b.in_words() for b in blocks)
        return f"按工作日计算，跳过{skipped}"
    if nominal == sent:
        return None
    block = off_block(nominal, calendar)
    verb = "提前至" if sent < nominal else "顺延至"
    target = _md(sent.month, sent.day)
    if block is None:  # a shift would have crossed the anchor: the other way round
        return f"{verb}{target}"
    return f"{block.in_words()}，{verb}{target}"


def workday_source(year: int, calendar: WorkCalendar) -> WorkdaySource:
    """Where `year`'s workdays come from: the built-in official data, a config `holidays:`
    table, or a guess: Monday-Friday less the statutory holidays (provisional)."""
    return year_source(year, calendar).kind

"""Campaign cadence: `every:` turns one occurrence span into one send per day of a rhythm.

Pure, like `rules`: the occurrence, the cadence, the policy and a `WorkCalendar` come in, the
send days go out. The rules (README, 活动期间按周期发送 Cadence):
- `workday`: every workday from start to end inclusive; the policy does not apply.
- `day`, `week`, `N days`: start, start + N, ... up to the end, each then moved by the workday
  policy. A move that would leave the span turns the other way (a campaign's sends stay inside
  it); a day with no workday inside the span on either side is dropped.
- Two sends that land on the same day are one send; the days come out strictly increasing.
- A one-day occurrence (in an event whose other dates are spans; `check` refuses `every:` on
  an event of single days) gets one send: as `on: start` for `day`/`week`/`N days`, and on
  that day if it is a workday for `workday`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from notifier.dates.rules import MAX_DURATION_N, Occurrence
from notifier.dates.workdays import WorkCalendar, WorkdayPolicy

__all__ = ["Cadence", "every_days", "parse_cadence"]

CadenceUnit = Literal["workday", "days"]

_WORKDAY = {"workday", "workdays", "每个工作日", "每工作日", "工作日", "每一个工作日"}
_DAY = {"day", "daily", "每天", "每日", "每一天"}
_WEEK = {"week", "weekly", "每周", "每星期", "每一周"}
_EVERY_N = re.compile(
    r"每?\s*([0-9]+)\s*(?:个\s*)?(days|day|d|天|日|weeks|week|w|周|星期)", re.IGNORECASE
)
_WEEK_UNITS = {"weeks", "week", "w", "周", "星期"}
_OTHER: dict[WorkdayPolicy, WorkdayPolicy] = {
    "previous": "next",
    "next": "previous",
    "ignore": "ignore",
}


@dataclass(frozen=True, slots=True)
class Cadence:
    """Every workday, or every n calendar days (day: n=1, week: n=7)."""

    unit: CadenceUnit
    n: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_DURATION_N:
            raise ValueError(f"a cadence must be 1..{MAX_DURATION_N} days, got {self.n}")

    @property
    def label(self) -> str:
        """每个工作日, 每天, 每周, 每3天: what templates and listings show."""
        if self.unit == "workday":
            return "每个工作日"
        return {1: "每天", 7: "每周"}.get(self.n, f"每{self.n}天")

    @property
    def slug(self) -> str:
        """The default reminder id's tail: workday, day, week, 3d."""
        if self.unit == "workday":
            return "workday"
        return {1: "day", 7: "week"}.get(self.n, f"{self.n}d")


def parse_cadence(text: object) -> Cadence:
    """Read day | workday | week | "N days" (also 每天 | 每个工作日 | 每周 | N天 | 每N天).

    "N weeks" / "N周" mean 7N days. Raises ValueError "'x' is not a cadence".
    """
    if isinstance(text, str):
        key = text.strip().lower()
        if key in _WORKDAY:
            return Cadence("workday")
        if key in _DAY:
            return Cadence("days", 1)
        if key in _WEEK:
            return Cadence("days", 7)
        match = _EVERY_N.fullmatch(key)
        if match is not None:
            n = int(match.group(1)) * (7 if match.group(2) in _WEEK_UNITS else 1)
            if 1 <= n <= MAX_DURATION_N:
                return Cadence("days", n)
    raise ValueError(
        f"'{text}' is not a cadence (day, workday, week, \"N days\"; 每天, 每个工作日, 每周, N天)"
    )


def every_days(
    occurrence: Occurrence, cadence: Cadence, policy: WorkdayPolicy, calendar: WorkCalendar
) -> list[date]:
    """The send days of `cadence` over `occurrence`, strictly increasing (see module doc)."""
    start, end = occurrence.start, occurrence.end
    if cadence.unit == "workday":
        span = (end - start).days + 1
        return [
            day
            for day in (start + timedelta(days=i) for i in range(span))
            if calendar.is_workday(day)
        ]
    if start == end:
        return [calendar.shift(start, policy)]
    found: set[date] = set()
    step = timedelta(days=cadence.n)
    day = start
    while day <= end:
        moved = calendar.shift(day, policy)
        if not start <= moved <= end:
            moved = calendar.shift(day, _OTHER[policy])
        if start <= moved <= end:
            found.add(moved)
        if end - day < step:
            break
        day += step
    return sorted(found)

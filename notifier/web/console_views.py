"""What each console page shows, computed from the running `App` (no HTTP here).

Planning is CPU on the event loop: windows are bounded (a month grid plans its six weeks, the
overview a month first and a year only when the month holds fewer than ten sends).
"""

from __future__ import annotations

import calendar as _calendar
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

import chinese_calendar

from notifier.dates.rules import Occurrence, occurrences, send_day
from notifier.dates.workdays import year_source
from notifier.schedule.describe import (
    WEEKDAYS,
    holiday_name,
    move_reason,
    rule_in_words,
    workday_source,
)
from notifier.schedule.model import Event
from notifier.schedule.planner import PlannedSend, next_occurrence
from notifier.service import App

# Spans that started this many days before a month are still drawn in it (a whole month,
# a publicity week); longer spans are drawn from the month they start in.
SPAN_LOOKBACK_DAYS = 62
NEXT_SENDS = 10
WEEKDAY_HEADERS = ("一", "二", "三", "四", "五", "六", "日")
# Planned views kept per loaded config (a month grid, the events list): a few dozen is a year
# of months browsed back and forth.
VIEW_CACHE_SIZE = 64

T = TypeVar("T")


class ViewCache:
    """Views computed from the schedule alone (and the dates asked about), kept until a reload
    replaces the schedule: planning 1,000 events for a month grid costs ~100 ms of CPU on the
    event loop, and the answer cannot change while the config and the day stay the same."""

    def __init__(self, size: int = VIEW_CACHE_SIZE) -> None:
        self.size = size
        self._schedule: object | None = None
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, schedule: object, key: Hashable, compute: Callable[[], T]) -> T:
        if schedule is not self._schedule:  # a reload: everything planned before is stale
            self._items.clear()
            self._schedule = schedule
        if key in self._items:
            self._items.move_to_end(key)
            value: T = self._items[key]
            return value
        value = compute()
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


def channels_of(app: App, p: PlannedSend) -> str:
    """Where the reminder goes: "email" and/or its chat channels, in audience order."""
    audiences = app.schedule.audiences
    names = [audiences[a].chat or "email" for a in p.reminder.all_audiences]
    return ", ".join(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class SendRow:
    at: datetime
    event_id: str
    title: str
    reminder: str
    label: str
    audience: str
    recipients: int
    channel: str
    provisional: bool
    reason: str | None


def send_rows(app: App, sends: list[PlannedSend]) -> list[SendRow]:
    audiences = app.schedule.audiences
    calendar = app.schedule.calendar
    return [
        SendRow(
            at=p.send_at,
            event_id=p.event.id,
            title=p.event.title,
            reminder=p.reminder.id,
            label=p.reminder.label,
            audience=", ".join(p.reminder.all_audiences),
            recipients=sum(audiences[a].size for a in p.reminder.all_audiences),
            channel=channels_of(app, p),
            provisional=p.provisional,
            reason=move_reason(p.occurrence, p.reminder, p.send_date, calendar),
        )
        for p in sends
    ]


def next_sends(app: App, count: int = NEXT_SENDS) -> list[SendRow]:
    now = app.now()
    sends: list[PlannedSend] = []
    for days in (31, 366):
        sends = app.upcoming(now, now + timedelta(days=days))
        if len(sends) >= count:
            break
    return send_rows(app, sends[:count])


def workday_years(app: App, today: date) -> list[tuple[int, str, str]]:
    """Per year: the kind of its source and the source in words (package version, file)."""
    schedule = app.schedule
    out: list[tuple[int, str, str]] = []
    for year in range(today.year - 1, today.year + 3):
        source = year_source(year, schedule.calendar, schedule.holiday_files)
        out.append((year, source.kind, source.in_words()))
    return out


# --- the month grid ------------------------------------------------------------------------


@dataclass
class SpanMark:
    event_id: str
    title: str
    part: str  # "one" (a one-day event), "start", "mid", "end"


@dataclass
class DayCell:
    day: date
    in_month: bool
    today: bool
    workday: bool
    holiday: str | None
    spans: list[SpanMark] = field(default_factory=list)
    sends: int = 0
    provisional: bool = False


@dataclass
class MonthView:
    first: date
    weeks: list[list[DayCell]]
    prev: date
    next: date
    sends_by_day: dict[date, list[SendRow]]


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _add_months(d: date, n: int) -> date:
    months = d.year * 12 + d.month - 1 + n
    return date(months // 12, months % 12 + 1, 1)


def month_view(app: App, first: date, today: date) -> MonthView:
    first = _month_start(first)
    grid_start = first - timedelta(days=first.weekday())
    last = first.replace(day=_calendar.monthrange(first.year, first.month)[1])
    grid_end = last + timedelta(days=6 - last.weekday())
    tz = app.settings.tz
    calendar = app.schedule.calendar
    spans: dict[date, list[SpanMark]] = defaultdict(list)
    for ev in app.schedule.events.values():
        for occ in occurrences(ev.specs, grid_start - timedelta(days=SPAN_LOOKBACK_DAYS), grid_end):
            if occ.end < grid_start:
                continue
            day = max(occ.start, grid_start)
            while day <= min(occ.end, grid_end):
                part = (
                    "one"
                    if occ.start == occ.end
                    else "start"
                    if day == occ.start
                    else "end"
                    if day == occ.end
                    else "mid"
                )
                spans[day].append(SpanMark(ev.id, ev.title, part))
                day += timedelta(days=1)
    sends = app.upcoming(
        datetime.combine(grid_start, time(0), tz),
        datetime.combine(grid_end + timedelta(days=1), time(0), tz),
    )
    by_day: dict[date, list[SendRow]] = defaultdict(list)
    for row in send_rows(app, sends):
        by_day[row.at.date()].append(row)
    weeks: list[list[DayCell]] = []
    day = grid_start
    while day <= grid_end:
        week = []
        for _ in range(7):
            rows = by_day.get(day, [])
            week.append(
                DayCell(
                    day=day,
                    in_month=day.month == first.month,
                    today=day == today,
                    workday=calendar.is_workday(day),
                    holiday=holiday_name(day),
                    spans=sorted(spans.get(day, []), key=lambda s: (s.part == "one", s.event_id)),
                    sends=len(rows),
                    provisional=any(r.provisional for r in rows),
                )
            )
            day += timedelta(days=1)
        weeks.append(week)
    return MonthView(first, weeks, _add_months(first, -1), _add_months(first, 1), dict(by_day))


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    title: str
    rule: str
    next: Occurrence | None
    reminders: int


def event_rows(app: App, today: date) -> list[EventRow]:
    return [
        EventRow(
            ev.id,
            ev.title,
            "；".join(rule_in_words(s) for s in ev.specs),
            next_occurrence(ev, today),
            len(ev.reminders),
        )
        for ev in sorted(app.schedule.events.values(), key=lambda e: e.id)
    ]


@dataclass(frozen=True, slots=True)
class ReminderDay:
    reminder: str
    label: str
    day: date
    weekday: str
    at: str
    audience: str
    recipients: int
    template: str
    reason: str | None


def upcoming_occurrences(event: Event, today: date, count: int = 5) -> list[Occurrence]:
    found = occurrences(event.specs, today - timedelta(days=400), today + timedelta(days=3 * 366))
    return [o for o in found if o.end >= today][:count]


def reminder_days(app: App, event: Event, occ: Occurrence) -> list[ReminderDay]:
    calendar = app.schedule.calendar
    out = []
    for r in event.reminders:
        day = send_day(occ, r.kind, r.value, r.workdays, calendar)
        out.append(
            ReminderDay(
                reminder=r.id,
                label=r.label,
                day=day,
                weekday=WEEKDAYS[day.weekday()],
                at=r.send_at.strftime("%H:%M"),
                audience=r.audience,
                recipients=app.schedule.audiences[r.audience].size,
                template=r.template,
                reason=move_reason(occ, r, day, calendar),
            )
        )
    return out


# --- config --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    file: str
    path: str
    message: str


def split_problem(line: str) -> ConfigProblem:
    """ "schedules/a.yaml: events[0].date: bad" -> file, path, message (as the loader writes)."""
    parts = line.split(": ", 2)
    if len(parts) == 3:
        return ConfigProblem(*parts)
    if len(parts) == 2:
        return ConfigProblem(parts[0], "", parts[1])
    return ConfigProblem("", "", line)


def holiday_tables(app: App, years: list[int]) -> list[dict[str, Any]]:
    """Per year: where its data comes from, official days off and make-up workdays, and the
    config table's entries."""
    calendar = app.schedule.calendar
    overrides = calendar.overrides
    out = []
    for year in years:
        official_off: dict[str, list[date]] = defaultdict(list)
        makeup: list[date] = []
        for day, name in chinese_calendar.holidays.items():
            if day.year == year and name:
                label = holiday_name(day) or str(name)
                official_off[label].append(day)
        for day in chinese_calendar.workdays:
            if day.year == year and day.weekday() >= 5:
                makeup.append(day)
        table = sorted((d, w) for d, w in overrides.items() if d.year == year)
        out.append(
            {
                "year": year,
                "source": workday_source(year, calendar),
                "words": year_source(year, calendar, app.schedule.holiday_files).in_words(),
                "official": [(name, min(days), max(days)) for name, days in official_off.items()],
                "makeup": sorted(makeup),
                "table": table,
            }
        )
    return out


def audience_problems(app: App) -> dict[str, list[str]]:
    """CSV warnings (one per bad line) by audience name, from the last config load."""
    out: dict[str, list[str]] = {}
    for name, audience in app.schedule.audiences.items():
        if audience.csv_path is None:
            continue
        prefix = f"{audience.csv_path}: "
        out[name] = [w.removeprefix(prefix) for w in app.warnings if w.startswith(prefix)]
    return out

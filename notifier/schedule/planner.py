"""Turn the schedule into planned sends in a time window. Pure: time comes in as arguments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from notifier.constants import SHIFT_SLACK_DAYS
from notifier.dates.cadence import every_days
from notifier.dates.rules import Duration, Occurrence, lead_margin, occurrences, send_day
from notifier.dates.workdays import WorkCalendar
from notifier.keys import plan_key, series_key
from notifier.schedule.model import Event, Reminder, Schedule

# Spans (a publicity week, a month, a one-off range) are assumed to last at most this long;
# an `after` reminder of an occurrence that started earlier than this is not looked for.
MAX_SPAN_DAYS = 400


@dataclass(frozen=True, slots=True)
class PlannedSend:
    """One reminder of one occurrence of one event, at its local send time."""

    event: Event
    occurrence: Occurrence
    reminder: Reminder
    send_date: date
    send_at: datetime
    # The day depends on a year without official workday data or a `holidays:` table: it
    # may move when the State Council's notice for that year is out (shown as 暂定).
    provisional: bool = False
    # Position among the sends of an `every:` reminder in this occurrence (1-based), of count.
    index: int = 1
    count: int = 1
    # The years without workday data this send's day was computed from (empty unless
    # provisional).
    unknown_years: tuple[int, ...] = ()

    @property
    def plan_key(self) -> str:
        """Unchanged for one-off reminders; an `every:` reminder's sends add their day."""
        key = plan_key(self.event.id, self.occurrence.start, self.reminder.id)
        return key if self.reminder.every is None else series_key(key, self.send_date)

    @property
    def replaced_keys(self) -> tuple[str, ...]:
        """The plans of the reminders this one replaces that would be this very send: the
        same day of a series, or, for a series' first send, a one-off reminder's only send."""
        keys: list[str] = []
        for old in self.reminder.replaces:
            key = plan_key(self.event.id, self.occurrence.start, old)
            if self.reminder.every is None or self.index == 1:
                keys.append(key)
            if self.reminder.every is not None:
                keys.append(series_key(key, self.send_date))
        return tuple(keys)

    @property
    def days_until(self) -> int:
        return (self.occurrence.start - self.send_date).days


def _margins(event: Event) -> tuple[int, int]:
    """Days to widen the window (back, forward) so that every send inside it is found."""
    back = forward = SHIFT_SLACK_DAYS
    for r in event.reminders:
        reach = lead_margin(r.value) if isinstance(r.value, Duration) else 0
        if r.kind == "before":
            forward = max(forward, reach + SHIFT_SLACK_DAYS)
        elif r.kind == "after" or r.value == "end" or r.every is not None:
            back = max(back, reach + MAX_SPAN_DAYS + SHIFT_SLACK_DAYS)
    return back, forward


def _known_around(calendar: WorkCalendar, occ: Occurrence) -> bool:
    """True if every year a send of `occ` could look up has official data (the fast path)."""
    return all(
        calendar.has_official_data(year) for year in range(occ.start.year - 1, occ.end.year + 2)
    )


def reminder_days(
    occ: Occurrence, r: Reminder, calendar: WorkCalendar, *, known: bool | None = None
) -> tuple[list[date], tuple[int, ...]]:
    """The send days of one reminder for one occurrence (one, or an `every:` series), and the
    years without workday data they were computed from (sorted; empty: not provisional).

    `known`: the caller's `_known_around(calendar, occ)`, to compute it once per occurrence.
    """
    if known is None:
        known = _known_around(calendar, occ)
    if known:
        lookup: WorkCalendar = calendar
        probe = None
    else:
        lookup = probe = calendar.probe()
    if r.every is not None:
        days = every_days(occ, r.every, r.workdays, lookup)
    else:
        days = [send_day(occ, r.kind, r.value, r.workdays, lookup)]
    return days, tuple(sorted(probe.unknown_years)) if probe is not None else ()


def plan_event(
    ev: Event, schedule: Schedule, since: datetime, until: datetime, tz: tzinfo
) -> list[PlannedSend]:
    """The sends of one event in the window (see `plan`)."""
    back, forward = _margins(ev)
    first = since.astimezone(tz).date() - timedelta(days=back)
    last = until.astimezone(tz).date() + timedelta(days=forward)
    out: list[PlannedSend] = []
    for occ in occurrences(ev.specs, first, last):
        known = _known_around(schedule.calendar, occ)
        for r in ev.reminders:
            days, unknown = reminder_days(occ, r, schedule.calendar, known=known)
            for index, day in enumerate(days, start=1):
                at = datetime.combine(day, r.send_at, tzinfo=tz)
                if since <= at < until:
                    out.append(
                        PlannedSend(ev, occ, r, day, at, bool(unknown), index, len(days), unknown)
                    )
    return out


def plan(schedule: Schedule, since: datetime, until: datetime, tz: tzinfo) -> list[PlannedSend]:
    """Every planned send with `since <= send_at < until`, ordered by time then event."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("plan() needs timezone-aware datetimes")
    out: list[PlannedSend] = []
    for ev in schedule.events.values():
        out.extend(plan_event(ev, schedule, since, until, tz))
    out.sort(key=lambda p: (p.send_at, p.event.id, p.reminder.id))
    return out


def next_occurrence(event: Event, after: date) -> Occurrence | None:
    """The first occurrence whose end is on or after `after` (the current or next one)."""
    # Most events recur within a year: look there first, ten years only if needed (the
    # same answer: occurrences beyond the short window start later than any inside it).
    for ahead in (400, 3700):
        found = occurrences(
            event.specs, after - timedelta(days=MAX_SPAN_DAYS), after + timedelta(days=ahead)
        )
        for occ in found:
            if occ.end >= after:
                return occ
    return None


def occurrence_on(event: Event, start: date) -> Occurrence | None:
    """The occurrence that starts on `start`, if the event has one."""
    for occ in occurrences(event.specs, start, start):
        if occ.start == start:
            return occ
    return None


def planned_json(p: PlannedSend, schedule: Schedule) -> dict[str, Any]:
    """One object of `upcoming --json` and /api/upcoming; `recipients` counts every audience
    the reminder goes to (a chat group counts as one)."""
    names = p.reminder.all_audiences
    return {
        "event": p.event.id,
        "title": p.event.title,
        "start": p.occurrence.start.isoformat(),
        "end": p.occurrence.end.isoformat(),
        "reminder": p.reminder.id,
        "send_at": p.send_at.isoformat(),
        "audience": p.reminder.audience,
        "audiences": list(names),
        "recipients": sum(schedule.audiences[name].size for name in names),
        "provisional": p.provisional,
        "index": p.index,
        "count": p.count,
    }

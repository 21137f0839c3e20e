"""Turn the schedule into planned sends in a time window. Pure: time comes in as arguments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from notifier.constants import SHIFT_SLACK_DAYS
from notifier.rules import Duration, Occurrence, lead_margin, occurrences, send_day
from notifier.schedules import Event, Reminder, Schedule

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

    @property
    def plan_key(self) -> str:
        return plan_key(self.event.id, self.occurrence.start, self.reminder.id)

    @property
    def days_until(self) -> int:
        return (self.occurrence.start - self.send_date).days


def plan_key(event_id: str, start: date, reminder_id: str) -> str:
    """The ledger's name for a planned send; delivery keys extend it with recipient and channel."""
    return f"{event_id}/{start.isoformat()}/{reminder_id}"


def _margins(event: Event) -> tuple[int, int]:
    """Days to widen the window (back, forward) so that every send inside it is found."""
    back = forward = SHIFT_SLACK_DAYS
    for r in event.reminders:
        reach = lead_margin(r.value) if isinstance(r.value, Duration) else 0
        if r.kind == "before":
            forward = max(forward, reach + SHIFT_SLACK_DAYS)
        elif r.kind == "after" or r.value == "end":
            back = max(back, reach + MAX_SPAN_DAYS + SHIFT_SLACK_DAYS)
    return back, forward


def plan_event(
    ev: Event, schedule: Schedule, since: datetime, until: datetime, tz: tzinfo
) -> list[PlannedSend]:
    """The sends of one event in the window (see `plan`)."""
    back, forward = _margins(ev)
    first = since.astimezone(tz).date() - timedelta(days=back)
    last = until.astimezone(tz).date() + timedelta(days=forward)
    out: list[PlannedSend] = []
    for occ in occurrences(ev.specs, first, last):
        for r in ev.reminders:
            day = send_day(occ, r.kind, r.value, r.workdays, schedule.calendar)
            at = datetime.combine(day, r.send_at, tzinfo=tz)
            if since <= at < until:
                out.append(PlannedSend(ev, occ, r, day, at))
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


def planned_json(p: PlannedSend, recipients: int) -> dict[str, Any]:
    """One object of `upcoming --json` and /api/upcoming."""
    return {
        "event": p.event.id,
        "title": p.event.title,
        "start": p.occurrence.start.isoformat(),
        "end": p.occurrence.end.isoformat(),
        "reminder": p.reminder.id,
        "send_at": p.send_at.isoformat(),
        "audience": p.reminder.audience,
        "recipients": recipients,
    }

"""The key dates as an iCalendar feed (RFC 5545) that Outlook or any calendar can subscribe to.

Pure: the schedule and the dates come in as arguments. One all-day VEVENT per occurrence, with
a UID stable across fetches (`{event}-{start}@notifier`) so that subscribers update in place;
the reminders are listed in the description, and `before` reminders also become VALARMs.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, tzinfo

import icalendar

from notifier.dates.rules import Occurrence, occurrences
from notifier.schedule.model import Event, Reminder, Schedule
from notifier.schedule.planner import reminder_days

log = logging.getLogger(__name__)

# How far ahead the feed reaches: a year is what a calendar view needs, and bounds the work.
FEED_DAYS = 366
PRODID = "-//notifier//key dates//ZH"
# Shown beside a send day that depends on a year without workday data, and in the summary of
# an occurrence that has one (subscribers see it in the calendar view itself).
PROVISIONAL_MARK = "（暂定）"
PROVISIONAL_NOTE = (
    "（暂定）提醒日期依赖尚未公布的节假日安排，可能调整 / provisional: send days depend on "
    "workday data not yet published and may move"
)


def _send_times(
    event: Event, occ: Occurrence, reminder: Reminder, schedule: Schedule, tz: tzinfo
) -> tuple[list[datetime], bool]:
    """The reminder's send times for `occ` (several for `every:`), and whether provisional."""
    try:
        days, unknown = reminder_days(occ, reminder, schedule.calendar)
    except (ValueError, NotImplementedError) as exc:
        log.warning(
            "no send day for the feed",
            extra={"action": "ical_skip", "event": event.id, "error": str(exc)},
        )
        return [], False
    return [datetime.combine(day, reminder.send_at, tzinfo=tz) for day in days], bool(unknown)


def _vevent(
    event: Event, occ: Occurrence, schedule: Schedule, tz: tzinfo, stamp: datetime
) -> icalendar.Event:
    vevent = icalendar.Event()
    vevent.add("uid", f"{event.id}-{occ.start.isoformat()}@notifier")
    vevent.add("dtstamp", stamp)
    vevent.add("dtstart", occ.start)
    vevent.add("dtend", occ.end + timedelta(days=1))  # exclusive for all-day events
    vevent.add("summary", event.title)
    vevent.add("transp", "TRANSPARENT")
    lines: list[str] = []
    if event.description:
        lines.extend([event.description.strip(), ""])
    lines.append("提醒 Reminders:")
    start_midnight = datetime.combine(occ.start, time(0), tzinfo=tz)
    any_provisional = False
    for reminder in event.reminders:
        times, provisional = _send_times(event, occ, reminder, schedule, tz)
        if not times:
            continue
        any_provisional = any_provisional or provisional
        mark = PROVISIONAL_MARK if provisional else ""
        if reminder.every is not None:
            days = ", ".join(f"{at:%m-%d}" for at in times)
            lines.append(
                f"- {reminder.label} ({reminder.id}): {len(times)} sends at "
                f"{times[0]:%H:%M}, {times[0]:%Y}: {days}{mark} → {reminder.audience}"
            )
            continue
        at = times[0]
        lines.append(
            f"- {reminder.label} ({reminder.id}): {at:%Y-%m-%d %H:%M}{mark} → {reminder.audience}"
        )
        if reminder.kind == "before":
            alarm = icalendar.Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", f"{event.title}：{reminder.label}{mark}")
            # Relative to the all-day start (local midnight), so it follows the subscriber.
            alarm.add("trigger", at - start_midnight)
            vevent.add_component(alarm)
    if any_provisional:
        lines.extend(["", PROVISIONAL_NOTE])
        vevent["summary"] = f"{event.title}{PROVISIONAL_MARK}"
    vevent.add("description", "\n".join(lines))
    return vevent


def calendar_feed(
    schedule: Schedule, *, today: date, tz: tzinfo, name: str, now: datetime, days: int = FEED_DAYS
) -> bytes:
    """The feed for occurrences starting in [today, today + days)."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", str(tz))
    last = today + timedelta(days=days - 1)
    for event in sorted(schedule.events.values(), key=lambda e: e.id):
        for occ in occurrences(event.specs, today, last):
            cal.add_component(_vevent(event, occ, schedule, tz, now))
    return bytes(cal.to_ical())

"""The key dates, and the office's workdays, as iCalendar feeds (RFC 5545) that Outlook or any
calendar can subscribe to.

Pure: the schedule and the dates come in as arguments. The key-date feed has one all-day
VEVENT per occurrence, with a UID stable across fetches (`{event}-{start}@notifier`) so that
subscribers update in place; the reminders are listed in the description, and `before`
reminders also become VALARMs. The workday feed has one all-day VEVENT per block of days off
("国庆节（休）") and per make-up workday ("国庆节调休（班）"), from the same data the planner uses.

A client keeps its copy of an event until the event's SEQUENCE goes up (RFC 5546): each event's
`digest` (its content without DTSTAMP) is what the ledger compares to bump it
(`Store.ical_sequences`); `render_feed` writes the sequences it is given.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import icalendar

from notifier.dates.rules import Occurrence, occurrences
from notifier.dates.workdays import WorkCalendar, statutory_holidays, year_source
from notifier.schedule.describe import holiday_name
from notifier.schedule.model import Event, Reminder, Schedule
from notifier.schedule.planner import reminder_days

log = logging.getLogger(__name__)

# How far ahead the feed reaches: a year is what a calendar view needs, and bounds the work.
FEED_DAYS = 366
PRODID = "-//notifier//key dates//ZH"
WORKDAYS_PRODID = "-//notifier//workdays//ZH"
# Lines left out of an event's digest: DTSTAMP is the time of the fetch, the rest are set from
# the digest's history.
_UNHASHED = (b"DTSTAMP", b"SEQUENCE", b"LAST-MODIFIED")
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


def feed_events(
    schedule: Schedule, *, today: date, tz: tzinfo, now: datetime, days: int = FEED_DAYS
) -> list[icalendar.Event]:
    """The key-date feed's events: occurrences starting in [today, today + days)."""
    last = today + timedelta(days=days - 1)
    return [
        _vevent(event, occ, schedule, tz, now)
        for event in sorted(schedule.events.values(), key=lambda e: e.id)
        for occ in occurrences(event.specs, today, last)
    ]


def digest(vevent: icalendar.Event) -> str:
    """What a subscriber would see of the event, hashed: DTSTAMP (the fetch's time) aside."""
    lines = [
        line
        for line in bytes(vevent.to_ical()).splitlines()
        if line.split(b":", 1)[0].split(b";", 1)[0] not in _UNHASHED
    ]
    return hashlib.sha256(b"\n".join(lines)).hexdigest()


@dataclass(frozen=True, slots=True)
class Revision:
    """An event's SEQUENCE and when its content last changed (POSIX seconds)."""

    sequence: int
    changed_at: float


def render_feed(
    events: list[icalendar.Event],
    *,
    name: str,
    tz: tzinfo,
    revisions: Mapping[str, Revision] | None = None,
    prodid: str = PRODID,
) -> bytes:
    """The calendar, each event with its SEQUENCE (0 for an event never seen) and, where known,
    LAST-MODIFIED."""
    cal = icalendar.Calendar()
    cal.add("prodid", prodid)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", str(tz))
    for vevent in events:
        revision = (revisions or {}).get(str(vevent["uid"]))
        vevent.add("sequence", revision.sequence if revision else 0)
        if revision is not None:
            vevent.add("last-modified", datetime.fromtimestamp(revision.changed_at, UTC))
        cal.add_component(vevent)
    return bytes(cal.to_ical())


def calendar_feed(
    schedule: Schedule, *, today: date, tz: tzinfo, name: str, now: datetime, days: int = FEED_DAYS
) -> bytes:
    """The feed for occurrences starting in [today, today + days), every SEQUENCE 0 (the web
    route gives the ledger's)."""
    events = feed_events(schedule, today=today, tz=tz, now=now, days=days)
    return render_feed(events, name=name, tz=tz)


# --- the workday feed ------------------------------------------------------------------------

# ASCII names for the UIDs of holiday blocks (a UID is compared byte for byte by clients).
_SLUGS = {
    "元旦": "new-year",
    "春节": "spring-festival",
    "清明节": "qingming",
    "劳动节": "labour-day",
    "端午节": "dragon-boat",
    "中秋节": "mid-autumn",
    "国庆节": "national-day",
}
# How far from a block of days off a make-up workday is looked for its holiday's name: the
# notices put them within a week of the holiday (2026-02-28 is five days after 春节).
MAKEUP_REACH = 14
WORKDAY_UID_DOMAIN = "notifier-workdays"


@dataclass(frozen=True, slots=True)
class _Block:
    first: date
    last: date
    names: tuple[str, ...]


def _day_name(day: date, calendar: WorkCalendar) -> str | None:
    """The holiday `day` belongs to: the official data's name, else the law's (from 2025)."""
    if year_source(day.year, calendar).kind == "official" and day not in calendar.overrides:
        return holiday_name(day)
    return statutory_holidays(day.year).get(day)


def _blocks(calendar: WorkCalendar, first: date, last: date) -> list[_Block]:
    """Runs of days off that hold a holiday: a weekday off, or a named day."""
    out: list[_Block] = []
    day = first
    while day <= last:
        if calendar.is_workday(day):
            day += timedelta(days=1)
            continue
        start = day
        while day + timedelta(days=1) <= last and not calendar.is_workday(day + timedelta(days=1)):
            day += timedelta(days=1)
        run = [start + timedelta(days=i) for i in range((day - start).days + 1)]
        names = tuple(dict.fromkeys(n for n in (_day_name(d, calendar) for d in run) if n))
        if names or any(d.weekday() < 5 for d in run):
            out.append(_Block(start, day, names))
        day += timedelta(days=1)
    return out


def _notice_year(day: date, names: tuple[str, ...]) -> int:
    """The year of the notice that sets `day`: 元旦's December days belong to the next one."""
    return day.year + 1 if day.month == 12 and "元旦" in names else day.year


def _table_year(days: list[date], calendar: WorkCalendar) -> int | None:
    """The year of the table that lists one of `days` (the later one where two do)."""
    years = [y for y, table in calendar.tables.items() if any(d in table for d in days)]
    return max(years) if years else None


def _source_lines(
    days: list[date], names: tuple[str, ...], calendar: WorkCalendar, files: Mapping[int, object]
) -> tuple[list[str], bool]:
    """The description's lines naming the notice and where the days come from; provisional?"""
    year = _notice_year(days[-1], names)
    notice = f"国务院办公厅关于{year}年部分节假日安排的通知"
    table = _table_year(days, calendar)
    if table is not None:
        return [
            f"依据 Notice：{notice}",
            f"来源 Source：配置表 config table {files.get(table, '')}",
        ], False
    source = year_source(days[-1].year, calendar, files)
    if source.kind == "provisional":
        return [
            f"暂定 Provisional：{notice}尚未公布（或未导入），按《全国年节及纪念日放假办法》推算，"
            "调休未知 / not yet published (or imported): the statutory holidays, make-up "
            "workdays unknown",
        ], True
    return [f"依据 Notice：{notice}", f"来源 Source：{source.in_words()}"], False


def workday_events(
    calendar: WorkCalendar,
    *,
    first: date,
    last: date,
    now: datetime,
    files: Mapping[int, object] | None = None,
) -> list[icalendar.Event]:
    """Days off (one event per block, "国庆节（休）") and make-up workdays ("国庆节调休（班）")
    in [first, last], from `calendar`: official data, tables and the guess (marked 暂定)."""
    files = files or {}
    blocks = _blocks(calendar, first, last)
    events: list[tuple[date, icalendar.Event]] = []
    uids: set[str] = set()
    for block in blocks:
        days = [block.first + timedelta(days=i) for i in range((block.last - block.first).days + 1)]
        name = "、".join(block.names) or "放假"
        lines, provisional = _source_lines(days, block.names, calendar, files)
        slugs = [_SLUGS.get(n) for n in block.names]
        key = block.first.isoformat()
        if block.names and all(slugs):
            key = f"{_notice_year(block.last, block.names)}-{'+'.join(map(str, slugs))}"
        uid = f"{key}-off@{WORKDAY_UID_DOMAIN}"
        if uid in uids:
            uid = f"{block.first.isoformat()}-off@{WORKDAY_UID_DOMAIN}"
        uids.add(uid)
        span = f"{block.first}..{block.last}" if block.last != block.first else str(block.first)
        summary = f"{name}（休）" + ("（暂定）" if provisional else "")
        events.append(
            (
                block.first,
                _all_day(
                    uid,
                    summary,
                    block.first,
                    block.last,
                    now,
                    [f"放假 Days off：{span}（{len(days)}天）", *lines],
                ),
            )
        )
    day = first
    while day <= last:
        if day.weekday() >= 5 and calendar.is_workday(day):
            near = min(
                (b for b in blocks if _distance(day, b) <= MAKEUP_REACH and b.names),
                key=lambda b: _distance(day, b),
                default=None,
            )
            names = near.names if near else ()
            name = _day_name(day, calendar) or "、".join(names)
            lines, provisional = _source_lines(
                [day], names or ((name,) if name else ()), calendar, files
            )
            summary = f"{name}调休（班）" if name else "调休上班（班）"
            summary += "（暂定）" if provisional else ""
            uid = f"{day.isoformat()}-work@{WORKDAY_UID_DOMAIN}"
            events.append(
                (
                    day,
                    _all_day(
                        uid,
                        summary,
                        day,
                        day,
                        now,
                        [
                            f"调休上班 Make-up workday：{day}（周{'六日'[day.weekday() - 5]}）",
                            *lines,
                        ],
                    ),
                )
            )
        day += timedelta(days=1)
    return [event for _, event in sorted(events, key=lambda pair: (pair[0], str(pair[1]["uid"])))]


def _distance(day: date, block: _Block) -> int:
    if day < block.first:
        return (block.first - day).days
    return (day - block.last).days


def _all_day(
    uid: str, summary: str, first: date, last: date, now: datetime, lines: list[str]
) -> icalendar.Event:
    vevent = icalendar.Event()
    vevent.add("uid", uid)
    vevent.add("dtstamp", now)
    vevent.add("dtstart", first)
    vevent.add("dtend", last + timedelta(days=1))  # exclusive for all-day events
    vevent.add("summary", summary)
    vevent.add("transp", "TRANSPARENT")
    vevent.add("description", "\n".join(lines))
    return vevent

"""The service's own notices to its admins (the `admins:` audience): moved send dates, a daily
digest of failed deliveries and of sends that could not be made, and rejected reloads.

Each notice is a ledger row like any other, with a key derived from what it reports, so one
change gives one notice however many restarts or instances see it: the database's unique
key decides. Templates (staff may edit them): `admin-moved`, `admin-digest`, `admin-rejected`;
their data is in `payload` (README, 管理员通知 Admin notices).

Workday changes are found by comparing what the workday calendar says, day by day, with a
snapshot kept in the ledger's `meta` table: a reload that adds a `holidays:` table and a start
with newer installed data (chinese-calendar) look the same from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from notifier.compose.context import CHAT_RECIPIENT, reminder_context, template_context
from notifier.compose.outbox import Outbox, Unmade
from notifier.compose.rendering import Renderer
from notifier.compose.rows import UNMADE_PREFIX
from notifier.config import Settings
from notifier.dates.workdays import WorkCalendar
from notifier.errors import RenderError, StoreError
from notifier.keys import admin_prefix, email_key, plan_key, series_key
from notifier.ledger.models import NewDelivery
from notifier.ledger.store import Store
from notifier.schedule.model import Schedule
from notifier.schedule.planner import PlannedSend, plan
from notifier.schedule.recipients import Recipient

log = logging.getLogger(__name__)

MOVED_TEMPLATE = "admin-moved"
DIGEST_TEMPLATE = "admin-digest"
REJECTED_TEMPLATE = "admin-rejected"
ADMIN_TEMPLATES = (MOVED_TEMPLATE, DIGEST_TEMPLATE, REJECTED_TEMPLATE)

# The plan compared before and after a workday change: the "next 400 days".
COMPARE_DAYS = 400
# The snapshot covers the days a plan of COMPARE_DAYS can look up (holiday shifts reach a
# month around a send; `after` reminders of long spans reach back).
SNAPSHOT_BACK = timedelta(days=60)
SNAPSHOT_AHEAD = timedelta(days=COMPARE_DAYS + 100)
SNAPSHOT_META = "workdays_snapshot"
DIGEST_META = "admin_digest_day"
# The digest of the previous day goes out after NOTIFIER_NOTICES__DIGEST_AT (default 08:00,
# local time): the timer fires at that time (`next_digest`), and every planning pass after
# it makes the digest if it is not made yet.
# A digest lists at most this many rows (and says how many more there were).
DIGEST_LIMIT = 200


@dataclass(frozen=True, slots=True)
class MovedSend:
    """One planned send whose day changed; `old` or `new` is None for an `every:` day that
    appeared or disappeared."""

    event_id: str
    title: str
    occurrence: date
    reminder_id: str
    reminder_label: str
    old: date | None
    new: date | None
    series: bool = False  # a day of an `every:` reminder

    @property
    def plan_key(self) -> str:
        """The plan this send was (or would have been) made under, before the change."""
        key = plan_key(self.event_id, self.occurrence, self.reminder_id)
        return series_key(key, self.old) if self.series and self.old else key

    def as_payload(self) -> dict[str, str]:
        return {
            "event": self.event_id,
            "title": self.title,
            "occurrence": self.occurrence.isoformat(),
            "reminder": self.reminder_id,
            "label": self.reminder_label,
            "old": self.old.isoformat() if self.old else "",
            "new": self.new.isoformat() if self.new else "",
        }


# --- pure parts ---------------------------------------------------------------------------


def snapshot(calendar: WorkCalendar, today: date) -> dict[str, str]:
    """What `calendar` says about each day around `today`: "1" workday, "0" day off."""
    first = today - SNAPSHOT_BACK
    count = (SNAPSHOT_AHEAD + SNAPSHOT_BACK).days + 1
    bits = "".join(
        "1" if calendar.is_workday(first + timedelta(days=i)) else "0" for i in range(count)
    )
    return {"from": first.isoformat(), "bits": bits}


def _days(snap: Mapping[str, str]) -> dict[date, bool]:
    first = date.fromisoformat(snap["from"])
    return {first + timedelta(days=i): bit == "1" for i, bit in enumerate(snap["bits"])}


def changed_days(old: Mapping[str, str], new: Mapping[str, str]) -> list[tuple[date, bool]]:
    """Days both snapshots cover on which they disagree, with the new verdict (sorted)."""
    before, after = _days(old), _days(new)
    return sorted((day, work) for day, work in after.items() if before.get(day, work) != work)


def change_key(changes: Iterable[tuple[date, bool]]) -> str:
    """A name for one workday change: the same change always gets the same name."""
    text = ",".join(f"{day.isoformat()}:{int(work)}" for day, work in changes)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def calendar_from(snap: Mapping[str, str], current: WorkCalendar) -> WorkCalendar:
    """The workday calendar a snapshot describes (outside it: what `current` says)."""
    days = _days(snap)
    first, last = min(days), max(days)
    return _Overlay(days, first, last, current)


class _Overlay(WorkCalendar):
    """The snapshot's days over a current calendar."""

    def __init__(
        self, days: Mapping[date, bool], first: date, last: date, current: WorkCalendar
    ) -> None:
        super().__init__(days, ())
        self._first, self._last, self._current = first, last, current

    def is_workday(self, day: date) -> bool:
        if self._first <= day <= self._last:
            return super().is_workday(day)
        return self._current.is_workday(day)

    def has_official_data(self, year: int) -> bool:
        return self._current.has_official_data(year)


def _series(sends: Iterable[PlannedSend]) -> dict[tuple[str, date, str], list[PlannedSend]]:
    out: dict[tuple[str, date, str], list[PlannedSend]] = {}
    for p in sends:
        out.setdefault((p.event.id, p.occurrence.start, p.reminder.id), []).append(p)
    return out


def moved_sends(
    schedule: Schedule, old_calendar: WorkCalendar, since: datetime, until: datetime, tz: tzinfo
) -> list[MovedSend]:
    """Sends of [since, until) whose day differs between `old_calendar` and the schedule's.

    A one-off reminder is matched by its plan (event, occurrence, reminder); an `every:`
    reminder's days are compared as sets, so a removed day and an added one are listed.
    """
    before = _series(plan(dataclasses.replace(schedule, calendar=old_calendar), since, until, tz))
    after = _series(plan(schedule, since, until, tz))
    out: list[MovedSend] = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key, []), after.get(key, [])
        sample = (old or new)[0]
        base = (sample.event.id, sample.event.title, key[1], key[2], sample.reminder.label)
        if sample.reminder.every is None:
            old_day = old[0].send_date if old else None
            new_day = new[0].send_date if new else None
            if old_day != new_day:
                out.append(MovedSend(*base, old_day, new_day))
            continue
        old_days = {p.send_date for p in old}
        new_days = {p.send_date for p in new}
        out.extend(MovedSend(*base, day, None, True) for day in sorted(old_days - new_days))
        out.extend(MovedSend(*base, None, day, True) for day in sorted(new_days - old_days))
    out.sort(key=lambda m: (min(d for d in (m.old, m.new) if d is not None), m.event_id))
    return out


def next_digest(now: datetime, at: time) -> datetime:
    """The next time the digest is due: today at `at` (local to `now`), or tomorrow's if that
    has passed. `now` must be aware; the result is in its zone."""
    tz = now.tzinfo
    assert tz is not None, "now must be aware"
    today = datetime.combine(now.date(), at, tzinfo=tz)
    if today > now:
        return today
    return datetime.combine(now.date() + timedelta(days=1), at, tzinfo=tz)


def sample_payloads(today: date) -> dict[str, dict[str, Any]]:
    """Realistic data for each admin template, for `notifier check`."""
    return {
        MOVED_TEMPLATE: {
            "moved": [
                MovedSend(
                    "security-day",
                    "全民国家安全教育日",
                    today,
                    "before-10d",
                    "提前10天",
                    today,
                    today + timedelta(days=1),
                ).as_payload()
            ],
            "changed_days": [{"date": today.isoformat(), "workday": False}],
            "years": [today.year],
        },
        DIGEST_TEMPLATE: {
            "day": today.isoformat(),
            "deliveries": [
                {
                    "id": 1,
                    "state": "dead",
                    "event": "security-day",
                    "reminder": "on-start",
                    "recipient": "someone@example.com",
                    "subject": "示例",
                    "due": f"{today.isoformat()} 09:00",
                    "error": "550 5.1.1 no such user",
                }
            ],
            "total": 1,
            "more": 0,
            "unmade": [
                {
                    "event": "security-day",
                    "title": "全民国家安全教育日",
                    "reminder": "on-start",
                    "label": "当天",
                    "send_at": f"{today.isoformat()} 09:00",
                    "gives_up_at": f"{(today + timedelta(days=1)).isoformat()} 09:00",
                    "error": "reminder: 'dict object' has no attribute 'room'",
                    "state": "retrying",
                    "rows": "",
                }
            ],
        },
        REJECTED_TEMPLATE: {
            "files": ["schedules/a.yaml"],
            "errors": ["schedules/a.yaml: events[0].reminders[0].before: '7x' is not a duration"],
        },
    }


def check_admin_templates(
    settings: Settings, schedule: Schedule, renderer: Renderer, *, now: datetime
) -> list[str]:
    """Problems with the admin templates, which exist only when `admins:` is set.

    Each renders as an email and as a chat group's message (its `chat.md`, or the subject and
    text body), whichever kinds of audience `admins:` names today: a group added later must
    not find a broken template.
    """
    if not schedule.admins:
        return []
    errors: list[str] = []
    today = now.astimezone(settings.tz).date()
    recipient = next(
        (r for name in schedule.admins for r in schedule.audiences[name].recipients()),
        Recipient("a@example.com", ""),
    )
    for name, payload in sample_payloads(today).items():
        if not renderer.exists(name):
            errors.append(
                f"{settings.templates_dir / name}: template not found: `admins:` is set, and "
                f"its notices need {', '.join(ADMIN_TEMPLATES)}"
            )
            continue
        problems = renderer.unknown_variables(name)
        errors.extend(problems)
        if problems:
            continue
        try:
            renderer.render(name, _context(settings, name, payload, recipient, today))
            renderer.render_chat(name, _context(settings, name, payload, CHAT_RECIPIENT, today))
        except RenderError as exc:
            errors.append(f"{settings.templates_dir / name}: {exc}")
    return errors


def _context(
    settings: Settings, kind: str, payload: Mapping[str, Any], recipient: Recipient, today: date
) -> dict[str, Any]:
    return template_context(
        org=settings.org_name,
        event=None,
        occurrence=None,
        reminder=reminder_context(None, kind, today),
        send_date=today,
        recipient=recipient,
        unsubscribe_url=None,
        payload=payload,
    )


# --- the service's side -------------------------------------------------------------------


class AdminNotices:
    """Makes the admins' notices as ledger rows; the delivery worker sends them.

    Faults are weather: a database or template problem is logged and the notice is tried
    again at the next occasion, never raised into the service.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        outbox: Outbox,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.outbox = outbox
        self._wake = wake

    async def workdays_changed(self, now: float) -> int:
        """Compare the workday calendar with the last snapshot; announce the moved sends.

        Returns the rows made (0: no change, nothing moved, or no `admins:`). The snapshot is
        updated after the notice is in the ledger: a crash between the two repeats the same
        change, whose key the ledger already holds.
        """
        tz = self.settings.tz
        schedule = self.outbox.schedule
        local = datetime.fromtimestamp(now, tz)
        current = snapshot(schedule.calendar, local.date())
        try:
            stored = await self.store.get_meta(SNAPSHOT_META)
            previous = json.loads(stored) if stored else None
            made = 0
            if previous is not None:
                changes = changed_days(previous, current)
                if changes and schedule.admins:  # nobody to tell: no plan to compare
                    made = await self._announce_moves(previous, changes, now)
            if previous is None or previous != current:
                await self.store.set_meta(SNAPSHOT_META, json.dumps(current))
        except (StoreError, RenderError, ValueError, KeyError) as exc:
            log.error(
                "workday change not announced",
                extra={"action": "admin_notice_failed", "notice": "moved", "error": str(exc)},
            )
            return 0
        return made

    async def unsent_moves(
        self, schedule: Schedule, old_calendar: WorkCalendar, now: float
    ) -> list[MovedSend]:
        """The sends of the next COMPARE_DAYS whose day differs between `old_calendar` and
        `schedule`'s, leaving out those already made (a send made keeps its day: the ledger
        is the truth)."""
        tz = self.settings.tz
        since = datetime.fromtimestamp(now, tz)
        until = since + timedelta(days=COMPARE_DAYS)
        moved = []
        for m in moved_sends(schedule, old_calendar, since, until, tz):
            if m.old is not None and await self.store.plan_done(m.plan_key):
                continue
            moved.append(m)
        return moved

    async def _announce_moves(
        self, previous: Mapping[str, str], changes: list[tuple[date, bool]], now: float
    ) -> int:
        schedule = self.outbox.schedule
        old_calendar = calendar_from(previous, schedule.calendar)
        moved = await self.unsent_moves(schedule, old_calendar, now)
        log.info(
            "workday data changed",
            extra={"action": "workdays_changed", "days": len(changes), "moved": len(moved)},
        )
        if not moved:
            return 0
        payload = {
            "moved": [m.as_payload() for m in moved],
            "changed_days": [{"date": d.isoformat(), "workday": w} for d, w in changes],
            "years": sorted({d.year for d, _ in changes}),
        }
        return await self._send(MOVED_TEMPLATE, f"workdays/{change_key(changes)}", payload, now)

    async def reload_rejected(self, errors: Sequence[str], now: float) -> int:
        """Tell the admins that the files on disk were rejected (once per set of errors a day)."""
        local = datetime.fromtimestamp(now, self.settings.tz)
        text = local.date().isoformat() + "\n" + "\n".join(sorted(errors))
        digest = hashlib.sha256(text.encode()).hexdigest()[:20]
        files = sorted({line.partition(": ")[0] for line in errors})
        payload = {"files": files, "errors": list(errors)}
        try:
            return await self._send(REJECTED_TEMPLATE, f"rejected/{digest}", payload, now)
        except (StoreError, RenderError) as exc:
            log.error(
                "reload rejection not announced",
                extra={"action": "admin_notice_failed", "notice": "rejected", "error": str(exc)},
            )
            return 0

    async def daily_digest(self, now: float, *, unmade: Sequence[Unmade] = ()) -> int:
        """After `notices.digest_at` (local), the previous local day's deliveries that ended
        failed or dead, and the sends that could not be made: those the previous day
        recorded missed for it, and `unmade` (the planner's, still tried until their grace
        ends). Nothing when there was none of either. Once a day: the key is the day."""
        if not self.outbox.schedule.admins:
            return 0
        tz = self.settings.tz
        local = datetime.fromtimestamp(now, tz)
        if local.time() < self.settings.notices.digest_at:
            return 0
        day = local.date() - timedelta(days=1)
        try:
            if await self.store.get_meta(DIGEST_META) == day.isoformat():
                return 0
            start = datetime.combine(day, time(0), tz).timestamp()
            end = datetime.combine(local.date(), time(0), tz).timestamp()
            rows = await self.store.ended_badly(since=start, until=end)
            gone = await self.store.missed_unmade(since=start, until=end)
            sends = [{**u.as_payload(), "state": "retrying", "rows": ""} for u in unmade] + [
                {
                    "event": g.event_id,
                    "title": self._title(g.event_id),
                    "reminder": g.reminder_id,
                    "label": "",
                    "send_at": datetime.fromtimestamp(g.first_due, tz).strftime("%Y-%m-%d %H:%M"),
                    "gives_up_at": "",
                    "error": g.error.removeprefix(UNMADE_PREFIX),
                    "state": "missed",
                    "rows": str(g.rows),
                }
                for g in gone
            ]
            made = 0
            if rows or sends:
                listed = [
                    {
                        "id": r.id,
                        "state": r.state,
                        "event": r.event_id,
                        "reminder": r.reminder_id,
                        "recipient": r.recipient,
                        "subject": r.subject,
                        "due": datetime.fromtimestamp(r.due_at, tz).strftime("%Y-%m-%d %H:%M"),
                        "error": r.error,
                    }
                    for r in rows[:DIGEST_LIMIT]
                ]
                payload = {
                    "day": day.isoformat(),
                    "deliveries": listed,
                    "total": len(rows),
                    "more": max(0, len(rows) - DIGEST_LIMIT),
                    "unmade": sends[:DIGEST_LIMIT],
                }
                made = await self._send(DIGEST_TEMPLATE, f"digest/{day.isoformat()}", payload, now)
            await self.store.set_meta(DIGEST_META, day.isoformat())
        except (StoreError, RenderError) as exc:
            log.error(
                "digest not made",
                extra={"action": "admin_notice_failed", "notice": "digest", "error": str(exc)},
            )
            return 0
        return made

    def _title(self, event_id: str) -> str:
        event = self.outbox.schedule.events.get(event_id)
        return event.title if event is not None else ""

    async def _send(self, template: str, name: str, payload: Mapping[str, Any], now: float) -> int:
        """Enqueue one notice per admin address and one per admin chat group, due now; the
        keys make a repeat a no-op."""
        schedule = self.outbox.schedule
        if not schedule.admins:
            return 0
        local = datetime.fromtimestamp(now, self.settings.tz)
        prefix = admin_prefix(name)
        rows: list[NewDelivery] = []
        addresses: set[str] = set()
        groups: list[str] = []
        for audience_name in schedule.admins:
            audience = schedule.audiences[audience_name]
            if audience.chat is not None:
                if audience.chat not in groups:
                    groups.append(audience.chat)
                continue
            for recipient in audience.recipients():
                if recipient.email.lower() in addresses:
                    continue  # in two admin audiences: one message
                addresses.add(recipient.email.lower())
                ctx = _context(self.settings, template, payload, recipient, local.date())
                rows.append(
                    self.outbox.rows.notice_row(
                        key=email_key(prefix, recipient.email),
                        rendered=self.outbox.renderer.render(template, ctx),
                        recipient=recipient,
                        kind=template,
                        due=local,
                    )
                )
        for channel_id in groups:
            ctx = _context(self.settings, template, payload, CHAT_RECIPIENT, local.date())
            rows.append(
                self.outbox.rows.notice_chat_row(
                    prefix=prefix, template=template, context=ctx, channel_id=channel_id, due=local
                )
            )
        made = await self.store.enqueue(rows, now=now) if rows else 0
        log.info(
            "admin notice",
            extra={
                "action": "admin_notice",
                "notice": template,
                "key": name,
                "rows": made,
                "groups": len(groups),
            },
        )
        if made:
            self._wake()
        return made

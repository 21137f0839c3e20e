"""Create ledger rows: render each message once, when its row is made, and keep what is sent.

Which rows, and when, is decided here; how a row looks (keys, contexts, rendered messages) is
`notifier.compose.rows`. Three sources make rows: the schedule (via `materialize`, called by the
timer), a manual send (`notifier send`, the admin API) and webhooks. Each row's key is
deterministic, so making the same row twice is a no-op: the database's unique key, not this
process, decides.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from notifier.compose.rendering import Renderer
from notifier.compose.rows import UNMADE_PREFIX, RowMaker, RunningConfig
from notifier.config import Settings
from notifier.constants import ENQUEUE_CHUNK, MANUAL_REMINDER
from notifier.dates.rules import Occurrence, send_day
from notifier.errors import NotifierError, SendError
from notifier.keys import again_reminder_id, plan_key
from notifier.ledger.models import NewDelivery, State
from notifier.ledger.store import Store
from notifier.schedule.model import Attachment, Audience, Event, Reminder, Schedule
from notifier.schedule.planner import PlannedSend, next_occurrence, occurrence_on, plan

log = logging.getLogger(__name__)


def not_after(now: float, tz: tzinfo) -> datetime:
    """`now` as a datetime no later than `now`: a row made at it is due at that very reading.

    `datetime.fromtimestamp` rounds to the microsecond, up by as much as half of one, and a
    send now whose rows were due that fraction after `now` was not claimed by a burst at the
    same clock reading (seen with a frozen test clock: the first burst sent nothing).
    """
    moment = datetime.fromtimestamp(now, tz)
    return moment - timedelta(microseconds=1) if moment.timestamp() > now else moment


class AudienceError(SendError):
    """An audience named for a manual send or preview that its reminder does not go to.

    `allowed` are the reminder's audiences, in order: what to name instead.
    """

    def __init__(self, name: str, allowed: Sequence[str], *, known: bool, reminder: str) -> None:
        self.name = name
        self.allowed = tuple(allowed)
        choices = ", ".join(self.allowed)
        if known:
            text = (
                f"受众 '{name}' 不在提醒 '{reminder}' 的受众中，可选：{choices}"
                f" / audience '{name}' is not one of reminder '{reminder}''s audiences: {choices}"
            )
        else:
            text = (
                f"未知受众 unknown audience '{name}'; 提醒 '{reminder}' 的受众"
                f" the reminder's audiences: {choices}"
            )
        super().__init__(text)


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """What a preview renders: the first row a manual send would make for it."""

    audiences: tuple[str, ...]  # every audience of the reminder, in order
    searched: tuple[str, ...]  # those looked in: the one named, or all of them
    audience: Audience  # where `row` was found (without a row: the first searched)
    row: NewDelivery | None  # None: no recipient (the one asked for) in those searched
    # The files each email carries (a chat group gets the text without them).
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Unmade:
    """A planned send none of whose rows could be made (its template fails for this send,
    its audience cannot be read). Nothing of it is in the ledger yet: each pass tries it
    again (a reload may have fixed it), and once `gives_up_at` has passed it is recorded
    `missed`, one row per recipient with the reason."""

    plan_key: str
    event_id: str
    title: str
    reminder_id: str
    reminder_label: str
    send_at: datetime
    gives_up_at: datetime  # send_at + the event's grace
    error: str

    def describe(self) -> str:
        """One line for /readyz: which send and until when it is tried. Not why: /readyz
        answers anyone, and the reason may quote a recipient's data (the console and the
        log have it)."""
        return (
            f"event '{self.event_id}' reminder '{self.reminder_id}' at "
            f"{self.send_at:%Y-%m-%d %H:%M}: cannot be made (无法生成), recorded missed after "
            f"{self.gives_up_at:%Y-%m-%d %H:%M}; the reason is in the console and the log"
        )

    def as_payload(self) -> dict[str, str]:
        """What the admins' digest and the console show of it."""
        return {
            "event": self.event_id,
            "title": self.title,
            "reminder": self.reminder_id,
            "label": self.reminder_label,
            "send_at": f"{self.send_at:%Y-%m-%d %H:%M}",
            "gives_up_at": f"{self.gives_up_at:%Y-%m-%d %H:%M}",
            "error": self.error,
        }


class UnmadeError(NotifierError):
    """No row of a planned send could be made; the message says why (the first failure)."""


# A send whose first rows all fail has a broken template or audience, not bad recipients:
# after this many failures and no row made, the rest is not rendered (a 100,000-row
# audience would otherwise render, and fail, every row at each pass until its grace ends).
UNMADE_PROBE = 100
# What reading an audience may raise at send time (its CSV removed or changed since loaded).
_READ_ERRORS = (OSError, UnicodeDecodeError, csv.Error)


class _Guarded:
    """A plan's rows as `rows_for(isolate=True)` makes them, with its unmade rows (no
    message, `last_error` set) held back until some row is made: a plan of which no row
    can be made raises UnmadeError before anything reaches the ledger, so that it can be
    tried again. Counts the unmade rows passed on."""

    def __init__(self, rows: Iterable[NewDelivery], plan: str) -> None:
        self._rows = rows
        self._plan = plan
        self.unmade = 0

    def _unmade(self, row: NewDelivery) -> NewDelivery:
        self.unmade += 1
        log.warning(
            "a recipient's message cannot be made; the others go out",
            extra={
                "action": "row_unmade",
                "plan": self._plan,
                "recipient": row.recipient,
                "error": row.last_error,
            },
        )
        return row

    def __iter__(self) -> Iterator[NewDelivery]:
        rows = iter(self._rows)
        held: list[NewDelivery] = []
        try:
            for row in rows:
                if row.last_error is None:
                    yield from map(self._unmade, held)
                    yield row
                    break
                held.append(row)
                if len(held) >= UNMADE_PROBE:
                    raise UnmadeError(_reason(held[0]))
            else:
                if held:
                    raise UnmadeError(_reason(held[0]))
                return
            for row in rows:
                yield row if row.last_error is None else self._unmade(row)
        except _READ_ERRORS as exc:
            raise UnmadeError(f"cannot read the audience: {exc}") from exc


def _reason(row: NewDelivery) -> str:
    return (row.last_error or "").removeprefix(UNMADE_PREFIX)


@dataclass(frozen=True, slots=True)
class Materialized:
    """What one `materialize` call did."""

    plans: int
    pending: int
    missed: int
    failed: int = 0  # rows of recipients whose message could not be made
    unmade: tuple[Unmade, ...] = ()  # sends none of whose rows could be made, still in grace


class Outbox:
    """Decides which rows to make (the schedule's, a manual send's, a preview's) and enqueues
    them; its row builder (`rows`, a `RowMaker`) makes the rows themselves."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        config: RunningConfig,
        unsubscribe_secret: bytes,
    ) -> None:
        self.settings = settings
        self.store = store
        self.rows = RowMaker(
            settings=settings, config=config, unsubscribe_secret=unsubscribe_secret
        )

    @property
    def config(self) -> RunningConfig:
        """The running config (the row builder's: one object, swapped whole on reload)."""
        return self.rows.config

    @config.setter
    def config(self, config: RunningConfig) -> None:
        self.rows.config = config

    @property
    def schedule(self) -> Schedule:
        return self.rows.config.schedule

    @property
    def renderer(self) -> Renderer:
        return self.rows.config.renderer

    @property
    def unsubscribe_secret(self) -> bytes:
        return self.rows.unsubscribe_secret

    async def _store_attachments(self, now: float) -> None:
        """The attachment contents the rows about to be committed name, stored first."""
        blobs = self.rows.take_blobs()
        try:
            await self.store.put_attachments(blobs, now=now)
        except BaseException:
            self.rows.keep_blobs(blobs)
            raise

    async def _enqueue_stream(self, rows: Iterable[NewDelivery], now: float) -> int:
        """Commit rows in chunks: memory stays flat however large the audience.

        The commit of one chunk overlaps the rendering of the next (the database driver
        works in its own thread or socket), so a large audience costs little more than
        its rendering.
        """
        created = 0
        inflight: asyncio.Task[int] | None = None
        chunk: list[NewDelivery] = []
        try:
            for row in rows:
                chunk.append(row)
                if len(chunk) >= ENQUEUE_CHUNK:
                    if inflight is not None:
                        created += await inflight
                    await self._store_attachments(now)
                    inflight = asyncio.create_task(self.store.enqueue(chunk, now=now))
                    chunk = []
                    await asyncio.sleep(0)  # let the commit start before rendering on
            if inflight is not None:
                created += await inflight
                inflight = None
            if chunk:
                await self._store_attachments(now)
                created += await self.store.enqueue(chunk, now=now)
        finally:
            if inflight is not None:
                # A render error stopped the stream: let the chunk already sent finish.
                await asyncio.gather(inflight, return_exceptions=True)
        return created

    # --- the schedule ---

    def grace_of(self, event: Event) -> timedelta:
        return event.grace if event.grace is not None else self.settings.grace

    def planned(self, since: datetime, until: datetime) -> list[PlannedSend]:
        return plan(self.schedule, since, until, self.settings.tz)

    async def materialize(self, now: float, *, since: float | None = None) -> Materialized:
        """Make rows for every planned send due before now + prepare_ahead.

        Sends from `since` (default: now minus the longest grace) that are still within their
        event's grace are made pending (a catch-up after downtime); older ones are recorded
        `missed`, so the ledger says what did not go out. Plans already made are skipped.
        """
        tz = self.settings.tz
        graces = [self.grace_of(e) for e in self.schedule.events.values()] or [self.settings.grace]
        start = since if since is not None else now - max(graces).total_seconds()
        until = datetime.fromtimestamp(now, tz) + self.settings.prepare_ahead
        plans = pending = missed = failed = 0
        unmade: list[Unmade] = []
        for send in self.planned(datetime.fromtimestamp(start, tz), until):
            if await self.store.plan_done(send.plan_key):
                continue
            if await self._replaced_done(send):
                await self.store.mark_plan_done(send.plan_key, now=now)
                continue
            late = now - send.send_at.timestamp()
            grace = self.grace_of(send.event)
            state = State.MISSED if late > grace.total_seconds() else State.PENDING
            rows = _Guarded(
                itertools.chain.from_iterable(
                    self.rows.rows_for(
                        prefix=send.plan_key,
                        event=send.event,
                        occurrence=send.occurrence,
                        reminder=send.reminder,
                        reminder_id=send.reminder.id,
                        template=send.reminder.template,
                        audience=self.schedule.audiences[name],
                        send_date=send.send_date,
                        due=send.send_at,
                        source="schedule",
                        state=state,
                        position=(send.index, send.count),
                        isolate=True,
                    )
                    for name in send.reminder.all_audiences
                ),
                send.plan_key,
            )
            try:
                made = await self._enqueue_stream(rows, now)
            except UnmadeError as exc:
                if state is State.PENDING:
                    # `notifier check` renders each template once; this send's own context
                    # (its day, its series position) may still fail. Nothing is in the
                    # ledger: the next pass tries again, until the grace ends.
                    lost = Unmade(
                        plan_key=send.plan_key,
                        event_id=send.event.id,
                        title=send.event.title,
                        reminder_id=send.reminder.id,
                        reminder_label=send.reminder.label,
                        send_at=send.send_at,
                        gives_up_at=send.send_at + grace,
                        error=str(exc),
                    )
                    unmade.append(lost)
                    log.error(
                        "send cannot be made; tried again at the next pass",
                        extra={
                            "action": "plan_unmade",
                            "plan": send.plan_key,
                            "error": str(exc),
                            "until": lost.gives_up_at.isoformat(),
                        },
                    )
                    continue
                made = await self._record_unmade(send, str(exc), now)
                await self.store.mark_plan_done(send.plan_key, now=now)
                plans += 1
                missed += made
                log.warning(
                    "send missed beyond grace: it could not be made",
                    extra={
                        "action": "missed",
                        "plan": send.plan_key,
                        "rows": made,
                        "error": str(exc),
                    },
                )
                continue
            await self.store.mark_plan_done(send.plan_key, now=now)
            plans += 1
            if state is State.PENDING:
                failed += rows.unmade
                made = max(0, made - rows.unmade)
            if state is State.MISSED:
                missed += made
                log.warning(
                    "send missed beyond grace",
                    extra={"action": "missed", "plan": send.plan_key, "rows": made},
                )
            else:
                pending += made
                log.info(
                    "send prepared",
                    extra={
                        "action": "prepared",
                        "plan": send.plan_key,
                        "rows": made,
                        "unmade": rows.unmade,
                    },
                )
        return Materialized(plans, pending, missed, failed, tuple(unmade))

    async def _record_unmade(self, send: PlannedSend, error: str, now: float) -> int:
        """Record a send none of whose rows could be made as `missed`, one row per recipient
        (rendering nothing), the reason in each row's `last_error`."""
        rows = itertools.chain.from_iterable(
            self.rows.unmade_rows(
                prefix=send.plan_key,
                event=send.event,
                occurrence=send.occurrence,
                reminder_id=send.reminder.id,
                audience=self.schedule.audiences[name],
                due=send.send_at,
                source="schedule",
                state=State.MISSED,
                error=error,
            )
            for name in send.reminder.all_audiences
        )
        return await self._enqueue_stream(rows, now)

    async def _replaced_done(self, send: PlannedSend) -> bool:
        """True if a reminder this one replaces already made this send (an upgrade that
        renamed a reminder, or turned a one-day send into a series, must not send it again)."""
        for key in send.replaced_keys:
            if await self.store.plan_done(key):
                log.info(
                    "send already made by a replaced reminder",
                    extra={"action": "replaced", "plan": send.plan_key, "by": key},
                )
                return True
        return False

    def resolve(
        self, event_id: str, reminder_id: str | None, on: date | None, today: date
    ) -> tuple[Event, Occurrence, Reminder | None]:
        event = self.schedule.events.get(event_id)
        if event is None:
            raise SendError(f"unknown event '{event_id}'")
        reminder: Reminder | None = None
        if reminder_id is not None and reminder_id != MANUAL_REMINDER:
            reminder = next((r for r in event.reminders if r.id == reminder_id), None)
            if reminder is None:
                known = ", ".join(r.id for r in event.reminders)
                raise SendError(
                    f"event '{event_id}' has no reminder '{reminder_id}' (known: {known})"
                )
        occ = occurrence_on(event, on) if on else next_occurrence(event, today)
        if occ is None:
            raise SendError(
                f"event '{event_id}' has no occurrence {'on ' + str(on) if on else 'ahead'}"
            )
        return event, occ, reminder

    def manual_rows(
        self,
        event_id: str,
        *,
        reminder_id: str | None,
        on: date | None,
        now: float,
        again: bool,
        only: str | None = None,
        as_planned: bool = False,
        audience_name: str | None = None,
    ) -> tuple[Audience, Iterator[NewDelivery]]:
        """Rows that send the event's message now; keys repeat unless `again`.

        With `as_planned` (previews) a reminder renders as on its planned day and time. The
        rows go to every audience of the reminder, or to `audience_name` alone: one of the
        reminder's (AudienceError otherwise). A manual notice (no reminder) goes where the
        event's first reminder goes.
        """
        tz = self.settings.tz
        now_dt = not_after(now, tz)
        event, occ, reminder = self.resolve(event_id, reminder_id, on, now_dt.date())
        if as_planned and reminder is not None:
            day = send_day(
                occ, reminder.kind, reminder.value, reminder.workdays, self.schedule.calendar
            )
            now_dt = datetime.combine(day, reminder.send_at, tzinfo=tz)
        base = reminder or event.reminders[0]
        rid = reminder.id if reminder else MANUAL_REMINDER
        names = self._chosen(base.all_audiences, audience_name, rid)
        if again:
            rid = again_reminder_id(rid, now)
        audience = self.schedule.audiences[names[0]]
        rows = itertools.chain.from_iterable(
            self.rows.rows_for(
                prefix=plan_key(event.id, occ.start, rid),
                event=event,
                occurrence=occ,
                reminder=reminder,
                reminder_id=rid,
                template=base.template,
                audience=self.schedule.audiences[name],
                send_date=now_dt.date(),
                due=now_dt,
                source="manual",
                only=only,
            )
            for name in names
        )
        return audience, rows

    def _chosen(self, names: tuple[str, ...], name: str | None, reminder: str) -> tuple[str, ...]:
        """`names`, or `name` alone when it is one of them (else AudienceError)."""
        if name is None:
            return names
        if name not in names:
            known = name in self.schedule.audiences
            raise AudienceError(name, names, known=known, reminder=reminder)
        return (name,)

    def preview_row(
        self,
        event_id: str,
        *,
        reminder_id: str | None,
        on: date | None,
        now: float,
        only: str | None = None,
        audience_name: str | None = None,
        as_planned: bool = False,
    ) -> PreviewRow:
        """The row a preview shows: for `only` (default: the first recipient) in
        `audience_name`, or in the first of the reminder's audiences that has it.

        Raises AudienceError for an audience the reminder does not go to, SendError or
        RenderError as `manual_rows`. Renders only the row it returns (a chat group's
        message, or one address's), however large the audiences.
        """
        today = datetime.fromtimestamp(now, self.settings.tz).date()
        event, _, reminder = self.resolve(event_id, reminder_id, on, today)
        base = reminder or event.reminders[0]
        files = reminder.attachments if reminder else event.attachments
        audiences = base.all_audiences
        searched = self._chosen(
            audiences, audience_name, reminder.id if reminder else MANUAL_REMINDER
        )
        for name in searched:
            audience, rows = self.manual_rows(
                event_id,
                reminder_id=reminder_id,
                on=on,
                now=now,
                again=False,
                only=only,
                as_planned=as_planned,
                audience_name=name,
            )
            row = next(rows, None)
            if row is not None:
                return PreviewRow(audiences, searched, audience, row, files)
        return PreviewRow(audiences, searched, self.schedule.audiences[searched[0]], None, files)

    async def send_now(
        self,
        event_id: str,
        *,
        reminder_id: str | None = None,
        on: date | None = None,
        now: float,
        again: bool = False,
    ) -> tuple[int, int]:
        """Enqueue a send due now; returns (rows created, audience size)."""
        audience, rows = self.manual_rows(
            event_id, reminder_id=reminder_id, on=on, now=now, again=again
        )
        return await self._enqueue_stream(rows, now), audience.size

    # --- webhooks ---

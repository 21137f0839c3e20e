"""Create ledger rows: render each message once, when its row is made, and keep what is sent.

Three sources make rows: the schedule (via `materialize`, called by the timer), a manual send
(`notifier send`, the admin API) and webhooks. Each row's key is deterministic, so making the
same row twice is a no-op: the database's unique key, not this process, decides.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from notifier.channels.payloads import ChatMessage, chat_text, payload
from notifier.config import Settings
from notifier.constants import ENQUEUE_CHUNK, HOOK_REMINDER, MANUAL_REMINDER
from notifier.errors import NotifierError, RenderError
from notifier.message import build_message, domain_of, message_id
from notifier.models import NewDelivery, State
from notifier.planner import PlannedSend, next_occurrence, occurrence_on, plan, plan_key
from notifier.rendering import Rendered, Renderer
from notifier.rules import Occurrence, send_day
from notifier.schedules import (
    Audience,
    Event,
    Hook,
    Recipient,
    Reminder,
    Schedule,
    check_address,
)
from notifier.store import Store, hook_row_key
from notifier.tokens import open_address, seal_address

log = logging.getLogger(__name__)

CHANNEL = "email"


class SendError(NotifierError):
    """A manual or webhook send cannot be made (unknown event, reminder, or recipients)."""


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


@dataclass(frozen=True, slots=True)
class Materialized:
    """What one `materialize` call did."""

    plans: int
    pending: int
    missed: int


def delivery_key(prefix: str, email: str) -> str:
    return f"{prefix}/{email.lower()}/{CHANNEL}"


# What templates see as `recipient` in a message to a chat group.
CHAT_RECIPIENT = Recipient("", "各位同事")


def chat_key(prefix: str, channel_id: str) -> str:
    """A chat row's key: one row per (plan, channel); ids hold no '@', so no email key clashes."""
    return f"{prefix}/{channel_id}/chat"


def unsubscribe_token(secret: bytes, email: str) -> str:
    """An opaque token for the address (AES-SIV, notifier/tokens.py): stateless, so any
    instance can verify it, and the address is not readable in the link."""
    return seal_address(secret, email)


def _legacy_unsubscribe_token(secret: bytes, addr: str) -> str:
    """`<email>.<mac>`, as links sent before opaque tokens carried it."""
    mac = hmac.new(secret, addr.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
    return f"{addr}.{mac}"


def verify_unsubscribe_token(secret: bytes, token: str) -> str | None:
    """The address a token was made for, or None if it is not ours.

    Links already sent in the older `<email>.<mac>` form keep working: they are in people's
    mailboxes, and unsubscribing must not break because the service was upgraded.
    """
    if "@" not in token:
        return open_address(secret, token)
    addr, _, mac = token.rpartition(".")
    if not addr or not mac:
        return None
    return addr if hmac.compare_digest(_legacy_unsubscribe_token(secret, addr), token) else None


def reminder_context(
    reminder: Reminder | None, kind: str, send_date: date, position: tuple[int, int] = (1, 1)
) -> dict[str, Any]:
    """What templates see as `reminder`; `index`/`count` place a send in its `every:` series
    ("第3天 / 共5天"), 1 of 1 for any other send."""
    index, count = position
    if reminder is None:
        label = "即时通知" if kind == MANUAL_REMINDER else "通知"
        return {
            "id": kind,
            "kind": kind,
            "label": label,
            "send_date": send_date,
            "index": index,
            "count": count,
        }
    return {
        "id": reminder.id,
        "kind": "every" if reminder.every is not None else reminder.kind,
        "label": reminder.label,
        "send_date": send_date,
        "index": index,
        "count": count,
    }


def template_context(
    *,
    org: str,
    event: Event | None,
    occurrence: Occurrence | None,
    reminder: Mapping[str, Any],
    send_date: date,
    recipient: Recipient,
    unsubscribe_url: str | None,
    payload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables every template gets (README, 模板 Templates)."""
    start = occurrence.start if occurrence else send_date
    return {
        "event": {
            "id": event.id if event else "",
            "title": event.title if event else "",
            "start": start,
            "end": occurrence.end if occurrence else send_date,
            "description": event.description if event else None,
            "vars": dict(event.vars) if event else {},
        },
        "reminder": dict(reminder),
        "days_until": (start - send_date).days,
        "recipient": recipient.context(),
        "org": org,
        "payload": dict(payload or {}),
        "unsubscribe_url": unsubscribe_url,
    }


def _distinct(recipients: Iterable[Recipient]) -> list[Recipient]:
    """The first recipient of each address (compared without case), in order."""
    seen: set[str] = set()
    out = []
    for recipient in recipients:
        address = recipient.email.lower()
        if address not in seen:
            seen.add(address)
            out.append(recipient)
    return out


class Outbox:
    """Renders and enqueues; holds the current schedule (swapped whole on reload)."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        renderer: Renderer,
        schedule: Schedule,
        unsubscribe_secret: bytes,
    ) -> None:
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.schedule = schedule
        self._unsub_secret = unsubscribe_secret
        self._sender = (settings.org_name, settings.mail_from)
        self._domain = domain_of(settings.mail_from)

    @property
    def unsubscribe_secret(self) -> bytes:
        """The key of unsubscribe tokens (read-only: the HTTP side verifies tokens with it)."""
        return self._unsub_secret

    # --- rendering ---

    def context(
        self,
        *,
        event: Event | None,
        occurrence: Occurrence | None,
        reminder: Mapping[str, Any],
        send_date: date,
        recipient: Recipient,
        external: bool,
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return template_context(
            org=self.settings.org_name,
            event=event,
            occurrence=occurrence,
            reminder=reminder,
            send_date=send_date,
            recipient=recipient,
            unsubscribe_url=self.unsubscribe_url(recipient.email) if external else None,
            payload=payload,
        )

    def unsubscribe_url(self, email: str) -> str:
        token = unsubscribe_token(self._unsub_secret, email)
        return f"{self.settings.public_url.rstrip('/')}/unsubscribe?token={token}"

    def _row(
        self,
        *,
        key: str,
        rendered: Rendered,
        recipient: Recipient,
        event_id: str,
        occurrence: str,
        reminder_id: str,
        due: datetime,
        source: str,
        external: bool,
        state: State = State.PENDING,
        unsubscribe_url: str | None = None,
    ) -> NewDelivery:
        msg_id = message_id(key, self._domain)
        headers: dict[str, str] = {}
        if external:
            url = unsubscribe_url or self.unsubscribe_url(recipient.email)
            headers["List-Unsubscribe"] = f"<{url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        else:
            headers["Auto-Submitted"] = "auto-generated"
        raw = build_message(
            sender=self._sender,
            recipient=(recipient.name, recipient.email),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            msg_id=msg_id,
            date=due,
            extra_headers=headers,
        )
        return NewDelivery(
            key=key,
            event_id=event_id,
            occurrence=occurrence,
            reminder_id=reminder_id,
            recipient=recipient.email,
            channel=CHANNEL,
            due_at=due.timestamp(),
            message_id=msg_id,
            subject=rendered.subject,
            message=raw,
            source=source,
            state=state,
            external=external,
        )

    def rows_for(
        self,
        *,
        prefix: str,
        event: Event,
        occurrence: Occurrence,
        reminder: Reminder | None,
        reminder_id: str,
        template: str,
        audience: Audience,
        send_date: date,
        due: datetime,
        source: str,
        state: State = State.PENDING,
        only: str | None = None,
        position: tuple[int, int] = (1, 1),
    ) -> Iterator[NewDelivery]:
        """Render one row per recipient, streaming (an audience may be a 100,000-row CSV).

        A chat audience gets one row: the message to its group.
        """
        rem_ctx = reminder_context(reminder, reminder_id, send_date, position)
        if audience.chat is not None:
            if only is not None and only != audience.chat:
                return  # an address is never a group: only the channel names its one row
            yield self._chat_row(
                prefix=prefix,
                event=event,
                occurrence=occurrence,
                reminder=rem_ctx,
                reminder_id=reminder_id,
                template=template,
                channel_id=audience.chat,
                send_date=send_date,
                due=due,
                source=source,
                state=state,
            )
            return
        for recipient in audience.recipients():
            if only is not None and recipient.email.lower() != only.lower():
                continue
            ctx = self.context(
                event=event,
                occurrence=occurrence,
                reminder=rem_ctx,
                send_date=send_date,
                recipient=recipient,
                external=audience.external,
            )
            yield self._row(
                key=delivery_key(prefix, recipient.email),
                rendered=self.renderer.render(template, ctx),
                recipient=recipient,
                event_id=event.id,
                occurrence=occurrence.start.isoformat(),
                reminder_id=reminder_id,
                due=due,
                source=source,
                external=audience.external,
                state=state,
                unsubscribe_url=ctx["unsubscribe_url"],
            )

    def chat_message(
        self,
        *,
        key: str,
        event: Event,
        occurrence: Occurrence,
        reminder: Mapping[str, Any],
        reminder_id: str,
        template: str,
        send_date: date,
    ) -> ChatMessage:
        """Render `chat.md` (or the subject and text body) for a chat group."""
        ctx = self.context(
            event=event,
            occurrence=occurrence,
            reminder=reminder,
            send_date=send_date,
            recipient=CHAT_RECIPIENT,
            external=False,
        )
        rendered, text = self.renderer.render_chat(template, ctx)
        return ChatMessage(
            key=key,
            subject=rendered.subject,
            text=text if text is not None else chat_text(rendered.subject, rendered.text),
            event_id=event.id,
            event_title=event.title,
            occurrence=occurrence.start.isoformat(),
            start=occurrence.start.isoformat(),
            end=occurrence.end.isoformat(),
            reminder_id=reminder_id,
            reminder_label=str(reminder.get("label", "")),
        )

    def _chat_row(
        self,
        *,
        prefix: str,
        event: Event,
        occurrence: Occurrence,
        reminder: Mapping[str, Any],
        reminder_id: str,
        template: str,
        channel_id: str,
        send_date: date,
        due: datetime,
        source: str,
        state: State,
    ) -> NewDelivery:
        """One row per (plan, channel): the platform's JSON body, kept so a retry resends it."""
        key = chat_key(prefix, channel_id)
        msg = self.chat_message(
            key=key,
            event=event,
            occurrence=occurrence,
            reminder=reminder,
            reminder_id=reminder_id,
            template=template,
            send_date=send_date,
        )
        return self._chat_delivery(msg, channel_id, due, source=source, state=state)

    def _chat_delivery(
        self, msg: ChatMessage, channel_id: str, due: datetime, *, source: str, state: State
    ) -> NewDelivery:
        """The ledger row of a chat message: the channel's body for it, as a retry resends."""
        return NewDelivery(
            key=msg.key,
            event_id=msg.event_id,
            occurrence=msg.occurrence,
            reminder_id=msg.reminder_id,
            recipient=channel_id,
            channel=channel_id,
            due_at=due.timestamp(),
            message_id=message_id(msg.key, self._domain),
            subject=msg.subject,
            message=payload(self.schedule.channels[channel_id], msg),
            source=source,
            state=state,
        )

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
                    inflight = asyncio.create_task(self.store.enqueue(chunk, now=now))
                    chunk = []
                    await asyncio.sleep(0)  # let the commit start before rendering on
            if inflight is not None:
                created += await inflight
                inflight = None
            if chunk:
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
        plans = pending = missed = 0
        for send in self.planned(datetime.fromtimestamp(start, tz), until):
            if await self.store.plan_done(send.plan_key):
                continue
            if await self._replaced_done(send):
                await self.store.mark_plan_done(send.plan_key, now=now)
                continue
            late = now - send.send_at.timestamp()
            state = (
                State.MISSED if late > self.grace_of(send.event).total_seconds() else State.PENDING
            )
            rows = itertools.chain.from_iterable(
                self.rows_for(
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
                )
                for name in send.reminder.all_audiences
            )
            try:
                made = await self._enqueue_stream(rows, now)
            except RenderError as exc:
                # `notifier check` catches these before start; a row that cannot render is
                # logged and retried at the next materialize rather than half-sent.
                log.error(
                    "render failed",
                    extra={"action": "render_failed", "plan": send.plan_key, "error": str(exc)},
                )
                continue
            await self.store.mark_plan_done(send.plan_key, now=now)
            plans += 1
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
                    extra={"action": "prepared", "plan": send.plan_key, "rows": made},
                )
        return Materialized(plans, pending, missed)

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

    def notice_row(
        self, *, key: str, rendered: Rendered, recipient: Recipient, kind: str, due: datetime
    ) -> NewDelivery:
        """A row of one of the service's own notices to its admins (`notifier.notices`)."""
        return self._row(
            key=key,
            rendered=rendered,
            recipient=recipient,
            event_id=f"admin:{kind}",
            occurrence="",
            reminder_id=kind,
            due=due,
            source="admin",
            external=False,
        )

    def notice_chat_row(
        self,
        *,
        prefix: str,
        template: str,
        context: Mapping[str, Any],
        channel_id: str,
        due: datetime,
    ) -> NewDelivery:
        """A chat group's row of one of the admins' notices: its `chat.md` (or the subject
        and text body, as for reminders) in the channel's form, kept so a retry resends it."""
        key = chat_key(prefix, channel_id)
        rendered, text = self.renderer.render_chat(template, context)
        msg = ChatMessage(
            key=key,
            subject=rendered.subject,
            text=text if text is not None else chat_text(rendered.subject, rendered.text),
            event_id=f"admin:{template}",
            event_title=rendered.subject,
            occurrence="",
            start="",
            end="",
            reminder_id=template,
            reminder_label=str(context["reminder"].get("label", "")),
            kind="notice",
        )
        return self._chat_delivery(msg, channel_id, due, source="admin", state=State.PENDING)

    # --- manual sends ---

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
        now_dt = datetime.fromtimestamp(now, tz)
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
            rid = f"{rid}~{int(now * 1000)}"
        audience = self.schedule.audiences[names[0]]
        rows = itertools.chain.from_iterable(
            self.rows_for(
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
                return PreviewRow(audiences, searched, audience, row)
        return PreviewRow(audiences, searched, self.schedule.audiences[searched[0]], None)

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

    def hook_rows(
        self, hook: Hook, webhook_id: str, payload: Mapping[str, Any], due: datetime
    ) -> list[NewDelivery]:
        """Rows for one accepted webhook, one per address; RenderError or SendError: a 422."""
        recipients = _distinct(self.hook_recipients(hook, payload))
        external = False
        if hook.audience is not None:
            external = self.schedule.audiences[hook.audience].external
        rem_ctx = reminder_context(None, HOOK_REMINDER, due.date())
        rows = []
        for position, recipient in enumerate(recipients):
            ctx = self.context(
                event=None,
                occurrence=None,
                reminder=rem_ctx,
                send_date=due.date(),
                recipient=recipient,
                external=external,
                payload=payload,
            )
            ctx["event"]["id"] = hook.id
            rows.append(
                self._row(
                    key=hook_row_key(hook.id, webhook_id, position),
                    rendered=self.renderer.render(hook.template, ctx),
                    recipient=recipient,
                    event_id=f"hook:{hook.id}",
                    occurrence="",
                    reminder_id=HOOK_REMINDER,
                    due=due,
                    source="hook",
                    external=external,
                    unsubscribe_url=ctx["unsubscribe_url"],
                )
            )
        return rows

    def hook_recipients(self, hook: Hook, payload: Mapping[str, Any]) -> Sequence[Recipient]:
        if hook.audience is not None:
            return list(self.schedule.audiences[hook.audience].recipients())
        to = payload.get("to")
        if not isinstance(to, list) or not to:
            raise SendError("payload.to: a non-empty list of recipients is required by this hook")
        out: list[Recipient] = []
        for i, item in enumerate(to):
            email, name = (
                (item, "")
                if isinstance(item, str)
                else (
                    (item.get("email"), item.get("name", ""))
                    if isinstance(item, dict)
                    else (None, "")
                )
            )
            if not isinstance(email, str) or not isinstance(name, str):
                raise SendError(f"payload.to[{i}]: expected an address or {{email, name}}")
            problem = check_address(email)
            if problem:
                raise SendError(f"payload.to[{i}]: {problem}")
            out.append(Recipient(email, name))
        return out

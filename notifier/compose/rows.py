"""Ledger rows made from templates: one row builder per kind (a reminder's email and chat
rows, an admin notice's, a webhook's), with their unsubscribe links.

Pure apart from rendering: nothing here touches the database. `outbox.Outbox` decides which
rows to make and enqueues them.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from notifier.channels.payloads import ChatMessage, chat_text, payload
from notifier.compose.context import CHAT_RECIPIENT, reminder_context, template_context
from notifier.compose.message import AttachedFile, build_message, domain_of, message_id
from notifier.compose.rendering import Rendered, Renderer
from notifier.compose.tokens import unsubscribe_token
from notifier.config import Settings
from notifier.constants import HOOK_REMINDER
from notifier.dates.rules import Occurrence
from notifier.errors import RenderError, SendError
from notifier.keys import EMAIL, admin_prefix, chat_key, email_key, hook_row_key
from notifier.ledger.models import NewDelivery, State
from notifier.schedule.model import Attachment, Audience, Event, Hook, Reminder, Schedule
from notifier.schedule.recipients import Recipient, check_address
from notifier.schedule.sheets import AudienceFileError

log = logging.getLogger(__name__)

# How `last_error` begins on a row whose message could not be made (it has none).
UNMADE_PREFIX = "cannot be made (无法生成): "


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


@dataclass(frozen=True, slots=True)
class RunningConfig:
    """The config the service runs: the schedule and the templates that render it. A reload
    swaps it whole, so no send ever sees a new schedule with old templates."""

    schedule: Schedule
    renderer: Renderer


class RowMaker:
    """Renders rows from the running config (`config`, swapped whole on reload)."""

    def __init__(
        self,
        *,
        settings: Settings,
        config: RunningConfig,
        unsubscribe_secret: bytes,
    ) -> None:
        self.settings = settings
        self.config = config
        self._unsub_secret = unsubscribe_secret
        self._sender = (settings.org_name, settings.mail_from)
        self._domain = domain_of(settings.mail_from)
        # Attachments: digest by (path, mtime, size), and contents not yet in the ledger.
        self._file_digests: dict[tuple[Path, int, int], str] = {}
        self._blobs: dict[str, bytes] = {}

    @property
    def schedule(self) -> Schedule:
        return self.config.schedule

    @property
    def renderer(self) -> Renderer:
        return self.config.renderer

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

    def attached(self, files: Sequence[Attachment]) -> tuple[AttachedFile, ...]:
        """The files as a message names them, each read once per content (by size and
        modification time) and kept for `take_blobs` until the ledger has it. A file that
        cannot be read now is a RenderError: the row is not made, never made without it."""
        named: list[AttachedFile] = []
        for file in files:
            try:
                stat = file.path.stat()
                seen = (file.path, stat.st_mtime_ns, stat.st_size)
                digest = self._file_digests.get(seen)
                if digest is None:
                    content = file.path.read_bytes()
                    digest = hashlib.sha256(content).hexdigest()
                    self._file_digests[seen] = digest
                    self._blobs[digest] = content
            except OSError as exc:
                raise RenderError(
                    f"attachment {file.path}: {exc.strerror or exc} (附件无法读取)"
                ) from exc
            named.append(AttachedFile(file.name, file.mime, digest))
        return tuple(named)

    def take_blobs(self) -> dict[str, bytes]:
        """The attachment contents read since the last call: the ledger must have them
        before the rows that name them are committed (`Outbox` stores them first)."""
        blobs, self._blobs = self._blobs, {}
        return blobs

    def keep_blobs(self, blobs: dict[str, bytes]) -> None:
        """Put back contents the ledger did not take (a failed store): the next try has them."""
        self._blobs.update(blobs)

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
        attachments: Sequence[Attachment] = (),
        channel: str = EMAIL,
    ) -> NewDelivery:
        sender, domain = self._sender, self._domain
        account = self.schedule.channels.get(channel) if channel != EMAIL else None
        if account is not None and account.smtp is not None:
            # The account's own address: hosted mail refuses a From that is not its own.
            sender = (self.settings.org_name, account.smtp.mail_from)
            domain = domain_of(account.smtp.mail_from)
        msg_id = message_id(key, domain)
        # Ours, in the returned original of a bounce even where a provider rewrote the
        # Message-ID: how the bounce reader finds the row (notifier/bounces/).
        headers: dict[str, str] = {"X-Notifier-Id": msg_id.strip("<>").partition("@")[0]}
        if external:
            url = unsubscribe_url or self.unsubscribe_url(recipient.email)
            headers["List-Unsubscribe"] = f"<{url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        else:
            headers["Auto-Submitted"] = "auto-generated"
        raw = build_message(
            sender=sender,
            recipient=(recipient.name, recipient.email),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            msg_id=msg_id,
            date=due,
            extra_headers=headers,
            attachments=self.attached(attachments) if attachments else (),
        )
        return NewDelivery(
            key=key,
            event_id=event_id,
            occurrence=occurrence,
            reminder_id=reminder_id,
            recipient=recipient.email,
            channel=channel,
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
        isolate: bool = False,
    ) -> Iterator[NewDelivery]:
        """Render one row per recipient, streaming (an audience may be a 100,000-row CSV).

        A chat audience gets one row: the message to its group. A row that cannot be made
        raises RenderError; with `isolate` (the schedule's sends) it comes out instead as an
        unmade row (`unmade_row`: no message, the reason in `last_error`), so that one bad
        recipient does not hold back the others.
        """
        rem_ctx = reminder_context(reminder, reminder_id, send_date, position)
        if audience.chat is not None:
            if only is not None and only != audience.chat:
                return  # an address is never a group: only the channel names its one row
            try:
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
            except RenderError as exc:
                if not isolate:
                    raise
                yield self.unmade_row(
                    key=chat_key(prefix, audience.chat),
                    recipient=audience.chat,
                    channel=audience.chat,
                    event_id=event.id,
                    occurrence=occurrence.start.isoformat(),
                    reminder_id=reminder_id,
                    due=due,
                    source=source,
                    state=state,
                    error=str(exc),
                )
            return
        for recipient in audience.recipients():
            if only is not None and recipient.email.lower() != only.lower():
                continue
            key = email_key(prefix, recipient.email)
            ctx = self.context(
                event=event,
                occurrence=occurrence,
                reminder=rem_ctx,
                send_date=send_date,
                recipient=recipient,
                external=audience.external,
            )
            try:
                row = self._row(
                    key=key,
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
                    attachments=reminder.attachments if reminder else event.attachments,
                    channel=audience.mail_channel or EMAIL,
                )
            except RenderError as exc:
                if not isolate:
                    raise
                row = self.unmade_row(
                    key=key,
                    recipient=recipient.email,
                    channel=audience.mail_channel or EMAIL,
                    event_id=event.id,
                    occurrence=occurrence.start.isoformat(),
                    reminder_id=reminder_id,
                    due=due,
                    source=source,
                    state=state,
                    error=str(exc),
                    external=audience.external,
                )
            yield row

    def unmade_row(
        self,
        *,
        key: str,
        recipient: str,
        channel: str,
        event_id: str,
        occurrence: str,
        reminder_id: str,
        due: datetime,
        source: str,
        state: State,
        error: str,
        external: bool = False,
    ) -> NewDelivery:
        """The ledger row of a recipient whose message could not be made: no message (the
        worker never sends one: `delivery`), `failed` where the send was due (`missed` past
        its grace), and why in `last_error`, for the console and the admins' digest."""
        return NewDelivery(
            key=key,
            event_id=event_id,
            occurrence=occurrence,
            reminder_id=reminder_id,
            recipient=recipient,
            channel=channel,
            due_at=due.timestamp(),
            message_id=message_id(key, self._domain),
            subject="",
            message="",
            source=source,
            state=State.MISSED if state is State.MISSED else State.FAILED,
            external=external,
            last_error=f"{UNMADE_PREFIX}{error}",
        )

    def unmade_rows(
        self,
        *,
        prefix: str,
        event: Event,
        occurrence: Occurrence,
        reminder_id: str,
        audience: Audience,
        due: datetime,
        source: str,
        state: State,
        error: str,
    ) -> Iterator[NewDelivery]:
        """An unmade row for every recipient of `audience`, rendering nothing: how a send
        none of whose rows could be made is recorded once it is given up (`missed`).

        An audience that cannot be read either (its CSV gone) gets one row in its name.
        """
        common: dict[str, Any] = {
            "event_id": event.id,
            "occurrence": occurrence.start.isoformat(),
            "reminder_id": reminder_id,
            "due": due,
            "source": source,
            "state": state,
            "error": error,
        }
        if audience.chat is not None:
            key = chat_key(prefix, audience.chat)
            yield self.unmade_row(key=key, recipient=audience.chat, channel=audience.chat, **common)
            return
        try:
            for recipient in audience.recipients():
                yield self.unmade_row(
                    key=email_key(prefix, recipient.email),
                    recipient=recipient.email,
                    channel=audience.mail_channel or EMAIL,
                    external=audience.external,
                    **common,
                )
        except (OSError, UnicodeDecodeError, csv.Error, AudienceFileError) as exc:
            yield self.unmade_row(
                key=f"{prefix}/{audience.name}/audience",
                recipient=audience.name,
                channel=EMAIL,
                **{**common, "error": f"{error}; audience '{audience.name}': {exc}"},
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

    def notice_row(
        self, *, key: str, rendered: Rendered, recipient: Recipient, kind: str, due: datetime
    ) -> NewDelivery:
        """A row of one of the service's own notices to its admins (`compose.admin_notices`)."""
        return self._row(
            key=key,
            rendered=rendered,
            recipient=recipient,
            event_id=admin_prefix(kind),
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
            event_id=admin_prefix(template),
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

    def hook_rows(
        self, hook: Hook, webhook_id: str, payload: Mapping[str, Any], due: datetime
    ) -> list[NewDelivery]:
        """Rows for one accepted webhook, one per address; RenderError or SendError: a 422."""
        recipients = _distinct(self.hook_recipients(hook, payload))
        files = hook_attachments(hook, payload)
        external, channel = False, EMAIL
        if hook.audience is not None:
            external = self.schedule.audiences[hook.audience].external
            channel = self.schedule.audiences[hook.audience].mail_channel or EMAIL
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
                    attachments=files,
                    channel=channel,
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


def hook_attachments(hook: Hook, payload: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """The hook's files a webhook sends: all of them, or those `payload.attachments` names by
    file name. A request never gives a path: a name not in the hook's list is a SendError."""
    wanted = payload.get("attachments")
    if wanted is None:
        return hook.attachments
    if not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted):
        raise SendError("payload.attachments: expected a list of file names")
    by_name = {a.name: a for a in hook.attachments}
    for i, name in enumerate(wanted):
        if name not in by_name:
            offered = ", ".join(sorted(by_name)) or "none"
            raise SendError(
                f"payload.attachments[{i}]: {name[:100]!r} is not one of the hook's "
                f"attachments ({offered})"
            )
    return tuple(by_name[n] for n in dict.fromkeys(wanted))

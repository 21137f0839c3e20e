"""The HTTP side's request and response bodies as pydantic models: the source of /openapi.json.

Admin API handlers validate their input through the request models and serialise their answers
through the response models; `notifier.web.openapi` builds the document from the same models'
JSON schemas, so the description cannot drift from the code. The webhook accept path only
documents its payload and answer here: the payload is free-form JSON that templates read, and
its 202 body is written by hand for speed (a test checks it against `Accepted`).

The answers' schemas allow keys they do not name, except where a key must never appear (a
delivery's message body): a key that another handler adds to an answer (/readyz, say) is then
a gap in the description, not a failing client or schemathesis run.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from notifier.ledger.models import State
from notifier.web.common import (
    DEFAULT_DELIVERIES_LIMIT,
    MAX_DATE,
    MAX_DELIVERIES_LIMIT,
    MIN_DATE,
)

# Longest id accepted in a query filter (ids in the config are far shorter).
MAX_FILTER_LENGTH = 200
# Digits in a `limit`: enough for any allowed value, and no huge integers to parse.
MAX_LIMIT_DIGITS = 6

PlanDate = Annotated[date, Field(ge=MIN_DATE, le=MAX_DATE)]


def _iso_date(value: object) -> object:
    """A query date is ISO 8601 text: pydantic's lax mode would also read '0' as 1970-01-01."""
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "date_parsing", "{value} is not a date (YYYY-MM-DD)", {"value": repr(value[:64])}
        ) from None


QueryDate = Annotated[PlanDate, BeforeValidator(_iso_date)]


def _timestamp_text(value: datetime) -> str:
    # `isoformat`, not pydantic's own writer (which says "Z" for UTC): the same text as
    # `notifier upcoming --json` and the answers before the models.
    return value.isoformat()


Timestamp = Annotated[
    datetime,
    PlainSerializer(_timestamp_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


def _plain_digits(value: object) -> object:
    """A query `limit` is ASCII digits only: '-1', '+5', '1_000' or ' 5' are 400, not coerced."""
    if isinstance(value, str) and not (
        value.isascii() and value.isdigit() and len(value) <= MAX_LIMIT_DIGITS
    ):
        raise PydanticCustomError("int_parsing", "expected a positive integer")
    return value


# --- errors ----------------------------------------------------------------------------------


class Error(BaseModel):
    """Every error answer: `error` short, `detail` why and what to change."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="what went wrong, short")
    detail: str = Field(description="why, and what to change")
    field: str | None = Field(
        None,
        description="the payload field a template lacks, or the one refused (e.g. `to[0].name`)",
    )
    reasons: list[str] | None = Field(None, description="/readyz: each reason it is not ready")
    components: dict[str, str] | None = Field(
        None, description="/readyz: each component that is not ready, and its state"
    )
    audiences: list[str] | None = Field(
        None, description="/api/preview: the reminder's audiences, one of which to name"
    )


# --- webhooks --------------------------------------------------------------------------------


class HookHeaders(BaseModel):
    """The Standard Webhooks headers a hook request is signed with."""

    webhook_id: str = Field(
        alias="webhook-id", description="unique per message; a repeat returns the first answer"
    )
    webhook_timestamp: str = Field(
        alias="webhook-timestamp", description="unix seconds, within 5 minutes of the server"
    )
    webhook_signature: str = Field(
        alias="webhook-signature", description="space-separated `v1,<base64>` signatures"
    )


class HookRecipient(BaseModel):
    email: str
    name: str | None = None


class HookPayload(BaseModel):
    """Any JSON object; templates see it as `payload`. Two keys mean something to the service.

    Refused with 422 naming the field: NaN, Infinity or a number beyond a float (1e309); a
    control character in any text (C0 but TAB/LF/CR, DEL, C1), and in `to` none at all.
    """

    model_config = ConfigDict(extra="allow")

    send_at: str | None = Field(
        None,
        description="ISO 8601 date-time to send at (no offset: the service's zone); at most"
        " 400 days ahead",
    )
    to: list[str | HookRecipient] | None = Field(
        None,
        description="recipients, for hooks without an audience; an internationalised domain"
        " is sent in its ASCII (IDNA) form, a non-ASCII part before @ is refused (no SMTPUTF8)",
    )


class Accepted(BaseModel):
    """202: the webhook's rows are committed."""

    ids: list[int] = Field(description="the deliveries created (on a repeat: the first's)")
    duplicate: bool = Field(
        description="true: this webhook-id was accepted before; the ids are the first"
    )


# --- admin API: requests ---------------------------------------------------------------------


class UpcomingQuery(BaseModel):
    """The window of /api/upcoming; both ends are included."""

    first: QueryDate | None = Field(None, alias="from", description="first day (default today)")
    last: QueryDate | None = Field(None, alias="to", description="last day (default +60 days)")


class DeliveriesQuery(BaseModel):
    state: State | None = Field(None, description="only this state")
    event: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_FILTER_LENGTH,
        description="only this event id (`hook:<id>` for hooks)",
    )
    limit: Annotated[int, BeforeValidator(_plain_digits)] = Field(
        DEFAULT_DELIVERIES_LIMIT,
        ge=1,
        le=MAX_DELIVERIES_LIMIT,
        description="at most this many rows",
    )


def _filter(description: str) -> Any:
    return Field(None, min_length=1, max_length=MAX_FILTER_LENGTH, description=description)


class ExportQuery(BaseModel):
    """The filters of /api/deliveries/export; days of the planned send, both ends included."""

    format: Literal["xlsx", "csv"] = Field("xlsx", description="xlsx or csv (UTF-8 with BOM)")
    event: str | None = _filter("only this event id (`hook:<id>` for hooks)")
    reminder: str | None = _filter("only this reminder id")
    audience: str | None = _filter("only the recipients of this audience")
    state: State | None = Field(None, description="only this state")
    recipient: str | None = _filter("only this address")
    first: QueryDate | None = Field(None, alias="from", description="planned on or after this day")
    last: QueryDate | None = Field(None, alias="to", description="planned on or before this day")


class SuppressionsQuery(BaseModel):
    limit: Annotated[int, BeforeValidator(_plain_digits)] = Field(
        DEFAULT_DELIVERIES_LIMIT,
        ge=1,
        le=MAX_DELIVERIES_LIMIT,
        description="at most this many addresses, the latest bounce first",
    )


class PreviewRequest(BaseModel):
    # strict: JSON types as sent (no "5" for 5, no "yes" for true); dates still from strings.
    model_config = ConfigDict(strict=True)

    event: str = Field(min_length=1)
    reminder: str | None = Field(None, min_length=1, description="default: a manual notice")
    audience: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_FILTER_LENGTH,
        description="one of the reminder's audiences (a manual notice: the event's first"
        " reminder's); default: the first that has `recipient`, or the first",
    )
    recipient: str | None = Field(
        None,
        min_length=1,
        description="an address of the audience (default: its first); a chat group has one"
        " message, named by its channel if at all",
    )
    date: PlanDate | None = Field(None, description="occurrence start")


class SendRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    reminder: str | None = Field(None, min_length=1, description="default: a manual notice")
    date: PlanDate | None = Field(None, description="occurrence start")
    again: bool = Field(False, description="send even if already sent")


# --- admin API: answers ----------------------------------------------------------------------


class Span(BaseModel):
    start: date
    end: date


class Reminder(BaseModel):
    id: str
    kind: Literal["before", "on", "after"]
    label: str
    send_at: str = Field(description="HH:MM, the service's zone")
    audience: str
    template: str


class Event(BaseModel):
    id: str
    title: str
    description: str | None
    next: Span | None = Field(description="the next occurrence from today, if any")
    reminders: list[Reminder]


class Hook(BaseModel):
    id: str
    template: str
    audience: str | None


class Events(BaseModel):
    events: list[Event]
    hooks: list[Hook]


class PlannedSend(BaseModel):
    """The objects of `notifier upcoming --json` (`planner.planned_json`).

    Extra keys pass through: a key the planner adds reaches the API as it reaches the CLI.
    """

    model_config = ConfigDict(extra="allow")

    event: str
    title: str
    start: date
    end: date
    reminder: str
    send_at: Timestamp
    audience: str = Field(description="the reminder's first audience")
    audiences: list[str] = Field(description="every audience the reminder goes to, in order")
    recipients: int = Field(ge=0, description="recipients of all those audiences")
    provisional: bool = Field(
        description="the day depends on a year without workday data (暂定 provisional)"
    )
    index: int = Field(1, ge=1, description="the n-th send of an `every:` reminder")
    count: int = Field(1, ge=1, description="how many sends the `every:` reminder makes")


class Upcoming(BaseModel):
    first: date = Field(alias="from")
    last: date = Field(alias="to")
    upcoming: list[PlannedSend]


class Waiting(BaseModel):
    """A pending row held back by its mail account's quota or a throttle pause (no attempt
    spent): it goes at `until`."""

    model_config = ConfigDict(extra="forbid")

    until: Timestamp
    reason: str


class Delivery(BaseModel):
    """A ledger row's metadata; the message body is never returned."""

    model_config = ConfigDict(extra="forbid")

    id: int
    event: str
    occurrence: str | None
    reminder: str
    recipient: str
    channel: str
    state: State
    source: str
    external: bool
    subject: str
    message_id: str
    attempts: int
    last_error: str | None
    due_at: Timestamp
    sent_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    waiting: Waiting | None = None


class Deliveries(BaseModel):
    deliveries: list[Delivery]


class Suppression(BaseModel):
    """An address on the suppression list (outreach skips it): why, the server's words."""

    model_config = ConfigDict(extra="forbid")

    address: str
    reason: str
    excerpt: str = Field(description="the server's reply or the bounce, as kept")
    source: str = Field(description="smtp (refused at send time) or bounce (read back)")
    delivery_id: int | None = Field(description="the ledger row it was learned from")
    first_at: Timestamp
    last_at: Timestamp


class Suppressions(BaseModel):
    suppressions: list[Suppression]


class Unsuppressed(BaseModel):
    address: str
    removed: bool = Field(description="always true: an unknown address is a 404")


class PreviewAttachment(BaseModel):
    name: str
    type: str = Field(description="MIME type, from the file's suffix")
    size: int = Field(ge=0, description="bytes")


class Preview(BaseModel):
    subject: str
    text: str = Field(description="the text body; a chat group: the message as it will read")
    html: str | None
    recipient: str = Field(description="the address rendered for; a chat group: its channel")
    audience: str = Field(description="the audience rendered for")
    audiences: list[str] = Field(
        description="every audience of the reminder, in order: the choices of `audience`"
    )
    channel: str = Field(description="`email`, or the chat channel the group's message goes to")
    suppressed: int = Field(
        0,
        ge=0,
        description="an outside audience: its addresses on the suppression list (they bounced)"
        ", which the send skips",
    )
    body: dict[str, Any] | None = Field(
        None,
        description="a chat group: the JSON body as it will be posted (a signature, where the"
        " platform wants one, is added at send time)",
    )
    attachments: list[PreviewAttachment] = Field(
        default_factory=list,
        description="the files each email carries; a chat group gets the text without them",
    )


class SendResult(BaseModel):
    created: int = Field(ge=0, description="rows created (0: already sent)")
    audience: int = Field(ge=0)


class ConfigStatus(BaseModel):
    errors: list[str] = Field(description="non-empty: the service runs an older, valid config")
    warnings: list[str]


# --- operations and unsubscribe --------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]


class UnsubscribeQuery(BaseModel):
    token: str = Field(description="the signed token from the message's unsubscribe link")


class OneClick(BaseModel):
    """RFC 8058's form body (`List-Unsubscribe=One-Click`); the page's form sends `page=1`."""

    list_unsubscribe: Literal["One-Click"] | None = Field(None, alias="List-Unsubscribe")


class Unsubscribed(BaseModel):
    unsubscribed: str = Field(description="the address that gets no more outside messages")


class OpenApiDocument(BaseModel):
    """/openapi.json: this description (only its top level is described here)."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]

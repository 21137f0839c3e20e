"""The JSON admin API (`/api/...`), behind the admin token (the calendar feed: web/feed.py).

Requests are validated through the models in `notifier.web.schemas` and answers serialised
through them, so /openapi.json describes exactly what the handlers accept and write. A value
that does not parse (a date, a number, a state) is a 400, a well-formed one that cannot be
used (out of range, the wrong JSON type, missing) a 422, as before the models.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

import notifier.web.schemas as schemas
from notifier.channels.payloads import posted_text
from notifier.compose.message import message_parts
from notifier.compose.outbox import AudienceError, PreviewRow
from notifier.constants import UPCOMING_DAYS
from notifier.editing import Who
from notifier.errors import RenderError, SendError
from notifier.keys import EMAIL
from notifier.ledger.limits import Waiting
from notifier.ledger.models import Delivery
from notifier.schedule.planner import next_occurrence, planned_json
from notifier.service import App
from notifier.web.auth import client_address
from notifier.web.common import (
    APP_KEY,
    MAX_UPCOMING_SPAN_DAYS,
    ApiError,
    echo,
    render_problem,
    require_admin,
    stream_record,
)

# The longest address a path may name (RFC 5321: 254), as the console's removal form.
MAX_ADDRESS = 254
# The audit log's role for a change made with the admin bearer token.
API_ROLE = "admin-api"

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)

# Errors of a value that does not parse as its type: 400 (the rest of a query's errors too);
# the other errors of a JSON body (missing, wrong JSON type, out of range) are 422.
_UNPARSABLE = frozenset(
    {
        "date_parsing",
        "date_from_datetime_parsing",
        "date_from_datetime_inexact",
        "int_parsing",
        "int_parsing_size",
        "enum",
    }
)
# Errors of a query value that parsed but lies out of range: 422.
_OUT_OF_RANGE = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
# The top-level errors of a body that is not a JSON object.
_NOT_AN_OBJECT = frozenset({"model_type", "model_attributes_type", "dict_type"})


def _where(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"]) or "body"


def invalid(exc: ValidationError, source: Literal["query", "body"]) -> ApiError:
    """The first problem of a request as the API's JSON error (the count of any others)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    kind = first["type"]
    if kind == "json_invalid":
        return ApiError(400, "malformed JSON", f"the body is not valid JSON: {first['msg']}")
    if kind in _NOT_AN_OBJECT and not first["loc"]:
        return ApiError(400, "malformed JSON", "the body must be a JSON object")
    detail = f"{_where(first)}: {first['msg']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    if source == "query":
        return ApiError(422 if kind in _OUT_OF_RANGE else 400, "invalid parameter", detail)
    return ApiError(400 if kind in _UNPARSABLE else 422, "invalid field", detail)


def parse_query(request: web.Request, model: type[Model]) -> Model:
    """The query string through `model` (a repeated name: its first value)."""
    query: Mapping[str, str] = request.query
    try:
        return model.model_validate({name: query[name] for name in query})
    except ValidationError as exc:
        raise invalid(exc, "query") from None


async def parse_body(request: web.Request, model: type[Model], *, optional: bool = False) -> Model:
    """The JSON body through `model`; with `optional`, an empty body is the model's defaults."""
    body = await request.read()
    if optional and not body.strip():
        body = b"{}"
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid(exc, "body") from None


def answer(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
    )


def _event(app: App, event_id: str) -> schemas.Event:
    event = app.schedule.events[event_id]
    occ = next_occurrence(event, app.now().date())
    return schemas.Event(
        id=event.id,
        title=event.title,
        description=event.description,
        next=None if occ is None else schemas.Span(start=occ.start, end=occ.end),
        reminders=[
            schemas.Reminder(
                id=r.id,
                kind=r.kind,
                label=r.label,
                send_at=r.send_at.strftime("%H:%M"),
                audience=r.audience,
                template=r.template,
            )
            for r in event.reminders
        ],
    )


async def get_events(request: web.Request) -> web.Response:
    await require_admin(request)
    app = request.app[APP_KEY]
    return answer(
        schemas.Events(
            events=[_event(app, eid) for eid in sorted(app.schedule.events)],
            hooks=[
                schemas.Hook(id=h.id, template=h.template, audience=h.audience)
                for h in sorted(app.schedule.hooks.values(), key=lambda h: h.id)
            ],
        )
    )


async def get_upcoming(request: web.Request) -> web.Response:
    await require_admin(request)
    app = request.app[APP_KEY]
    q = parse_query(request, schemas.UpcomingQuery)
    first = q.first or app.now().date()
    last = q.last or first + timedelta(days=UPCOMING_DAYS)
    if last < first:
        raise ApiError(422, "invalid parameter", "to: must not be before from")
    if (last - first).days > MAX_UPCOMING_SPAN_DAYS:
        raise ApiError(
            422, "invalid parameter", f"the window may span at most {MAX_UPCOMING_SPAN_DAYS} days"
        )
    tz = app.settings.tz
    sends = app.upcoming(
        datetime.combine(first, time(0), tz),
        datetime.combine(last + timedelta(days=1), time(0), tz),
    )
    rows = [
        # Through `planned_json`: the same objects as `notifier upcoming --json`.
        schemas.PlannedSend.model_validate(planned_json(p, app.schedule))
        for p in sends
    ]
    return answer(schemas.Upcoming.model_validate({"from": first, "to": last, "upcoming": rows}))


def _at(ts: float | None, app: App) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, app.settings.tz)


def _delivery(d: Delivery, app: App, waiting: Waiting | None = None) -> schemas.Delivery:
    """Metadata and subject only: message bodies never leave the ledger through the API."""
    tz = app.settings.tz
    wait = None
    if waiting is not None:
        wait = schemas.Waiting(
            until=datetime.fromtimestamp(waiting.until, tz), reason=waiting.reason
        )
    return schemas.Delivery(
        id=d.id,
        event=d.event_id,
        occurrence=d.occurrence or None,
        reminder=d.reminder_id,
        recipient=d.recipient,
        channel=d.channel,
        state=d.state,
        source=d.source,
        external=d.external,
        subject=d.subject,
        message_id=d.message_id,
        attempts=d.attempts,
        last_error=d.last_error,
        due_at=datetime.fromtimestamp(d.due_at, tz),
        sent_at=_at(d.sent_at, app),
        created_at=datetime.fromtimestamp(d.created_at, tz),
        updated_at=datetime.fromtimestamp(d.updated_at, tz),
        waiting=wait,
    )


async def get_deliveries(request: web.Request) -> web.Response:
    await require_admin(request)
    app = request.app[APP_KEY]
    q = parse_query(request, schemas.DeliveriesQuery)
    rows = await app.deliveries(state=q.state, event=q.event, limit=q.limit)
    waits = await app.waiting([d.id for d in rows])
    return answer(schemas.Deliveries(deliveries=[_delivery(d, app, waits.get(d.id)) for d in rows]))


async def get_deliveries_export(request: web.Request) -> web.StreamResponse:
    """The delivery log as a record (XLSX or CSV), streamed as it is read."""
    await require_admin(request)
    app = request.app[APP_KEY]
    q = parse_query(request, schemas.ExportQuery)
    try:
        record = await app.delivery_record(
            q.format,
            event=q.event,
            reminder=q.reminder,
            audience=q.audience,
            state=q.state,
            recipient=q.recipient,
            start=q.first,
            end=q.last,
        )
    except SendError as exc:
        raise ApiError(422, "invalid field", f"audience: {echo(str(exc))}") from None
    return await stream_record(request, record)


def _known_event(app: App, event_id: str) -> None:
    if event_id not in app.schedule.events:
        raise ApiError(404, "unknown event", f"no event '{echo(event_id)}'")


async def post_preview(request: web.Request) -> web.Response:
    await require_admin(request)
    app = request.app[APP_KEY]
    req = await parse_body(request, schemas.PreviewRequest)
    _known_event(app, req.event)
    try:
        found = app.preview(
            req.event,
            reminder_id=req.reminder,
            on=req.date,
            recipient=req.recipient,
            audience=req.audience,
        )
    except AudienceError as exc:
        raise ApiError(
            422, "invalid field", f"audience: {exc}", extra={"audiences": list(exc.allowed)}
        ) from None
    except (RenderError, SendError) as exc:
        raise render_problem(exc) from None
    row = found.row
    if row is None:
        raise _no_recipient(app, found, req.recipient)
    if row.channel == EMAIL:
        subject, text, body_html = message_parts(row.message)
        body = None
    else:
        body = json.loads(row.message)
        subject, text, body_html = row.subject, posted_text(body), None
    return answer(
        schemas.Preview(
            subject=subject,
            text=text,
            html=body_html,
            recipient=row.recipient,
            audience=found.audience.name,
            audiences=list(found.audiences),
            channel=row.channel,
            suppressed=await app.suppressed_in(found.audience.name),
            body=body,
            attachments=[
                schemas.PreviewAttachment(name=a.name, type=a.mime, size=a.size)
                for a in found.attachments
            ],
        )
    )


def _no_recipient(app: App, found: PreviewRow, recipient: str | None) -> ApiError:
    names = ", ".join(f"'{name}'" for name in found.searched)
    where = f"audience {names}" if len(found.searched) == 1 else f"any of the audiences {names}"
    groups = [n for n in found.searched if app.schedule.audiences[n].chat is not None]
    if recipient is None:
        detail = f"recipient: no recipient in {where}"
    else:
        detail = f"recipient: '{echo(recipient)}' is not in {where}"
        if groups:
            detail += " (a chat group has one message: leave out recipient, or name its channel)"
    return ApiError(422, "invalid field", detail, extra={"audiences": list(found.audiences)})


async def post_send(request: web.Request) -> web.Response:
    await require_admin(request)
    app = request.app[APP_KEY]
    event_id = request.match_info["event_id"]
    req = await parse_body(request, schemas.SendRequest, optional=True)
    _known_event(app, event_id)
    try:
        created, size = await app.send_now(
            event_id, reminder_id=req.reminder, on=req.date, again=req.again
        )
    except (RenderError, SendError) as exc:
        raise render_problem(exc) from None
    log.info(
        "manual send",
        extra={"action": "api_send", "event": event_id, "rows_created": created, "audience": size},
    )
    return answer(schemas.SendResult(created=created, audience=size))


async def get_config(request: web.Request) -> web.Response:
    await require_admin(request)
    app = request.app[APP_KEY]
    return answer(schemas.ConfigStatus(errors=list(app.config_errors), warnings=list(app.warnings)))


async def get_suppressions(request: web.Request) -> web.Response:
    """The suppression list, the latest bounce first."""
    await require_admin(request)
    app = request.app[APP_KEY]
    q = parse_query(request, schemas.SuppressionsQuery)
    tz = app.settings.tz
    entries = await app.suppressed_addresses(limit=q.limit)
    return answer(
        schemas.Suppressions(
            suppressions=[
                schemas.Suppression(
                    address=e.address,
                    reason=e.reason,
                    excerpt=e.excerpt,
                    source=e.source,
                    delivery_id=e.delivery_id,
                    first_at=datetime.fromtimestamp(e.first_at, tz),
                    last_at=datetime.fromtimestamp(e.last_at, tz),
                )
                for e in entries
            ]
        )
    )


async def delete_suppression(request: web.Request) -> web.Response:
    """Take an address off the list (audited as the console's removal is)."""
    await require_admin(request)
    app = request.app[APP_KEY]
    address = request.match_info["address"].strip()
    if not address or len(address) > MAX_ADDRESS:
        raise ApiError(422, "invalid parameter", f"address: 1 to {MAX_ADDRESS} characters required")
    who = Who(API_ROLE, client_address(request))
    if not await app.unsuppress(address, who=who):
        raise ApiError(404, "not suppressed", f"'{echo(address)}' is not on the suppression list")
    return answer(schemas.Unsuppressed(address=address.lower(), removed=True))

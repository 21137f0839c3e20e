"""The JSON admin API (`/api/...`), behind the admin token (the calendar feed: web/feed.py)."""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from email import message_from_string
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiohttp import web

from notifier.constants import UPCOMING_DAYS
from notifier.errors import RenderError
from notifier.models import Delivery, State
from notifier.outbox import SendError
from notifier.planner import planned_json
from notifier.service import App
from notifier.web.common import (
    APP_KEY,
    DEFAULT_DELIVERIES_LIMIT,
    MAX_DELIVERIES_LIMIT,
    MAX_UPCOMING_SPAN_DAYS,
    ApiError,
    echo,
    json_object,
    opt_date,
    opt_str,
    render_problem,
    require_admin,
    to_date,
)

log = logging.getLogger(__name__)


def _event_json(app: App, event_id: str) -> dict[str, Any]:
    from notifier.planner import next_occurrence

    event = app.schedule.events[event_id]
    occ = next_occurrence(event, app.now().date())
    return {
        "id": event.id,
        "title": event.title,
        "description": event.description,
        "next": None
        if occ is None
        else {"start": occ.start.isoformat(), "end": occ.end.isoformat()},
        "reminders": [
            {
                "id": r.id,
                "kind": r.kind,
                "label": r.label,
                "send_at": r.send_at.strftime("%H:%M"),
                "audience": r.audience,
                "template": r.template,
            }
            for r in event.reminders
        ],
    }


async def get_events(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app[APP_KEY]
    events = [_event_json(app, eid) for eid in sorted(app.schedule.events)]
    hooks = [
        {"id": h.id, "template": h.template, "audience": h.audience}
        for h in sorted(app.schedule.hooks.values(), key=lambda h: h.id)
    ]
    return web.json_response({"events": events, "hooks": hooks})


async def get_upcoming(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app[APP_KEY]
    today = app.now().date()
    q = request.query
    first = to_date(q["from"], "from") if "from" in q else today
    last = to_date(q["to"], "to") if "to" in q else first + timedelta(days=UPCOMING_DAYS)
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
    audiences = app.schedule.audiences
    rows = [planned_json(p, audiences[p.reminder.audience].size) for p in sends]
    return web.json_response({"from": first.isoformat(), "to": last.isoformat(), "upcoming": rows})


def _iso(ts: float | None, app: App) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, app.settings.tz).isoformat()


def _delivery_json(d: Delivery, app: App) -> dict[str, Any]:
    """Metadata and subject only: message bodies never leave the ledger through the API."""
    return {
        "id": d.id,
        "event": d.event_id,
        "occurrence": d.occurrence or None,
        "reminder": d.reminder_id,
        "recipient": d.recipient,
        "channel": d.channel,
        "state": d.state.value,
        "source": d.source,
        "external": d.external,
        "subject": d.subject,
        "message_id": d.message_id,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "due_at": _iso(d.due_at, app),
        "sent_at": _iso(d.sent_at, app),
        "created_at": _iso(d.created_at, app),
        "updated_at": _iso(d.updated_at, app),
    }


async def get_deliveries(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app[APP_KEY]
    q = request.query
    state: State | None = None
    if "state" in q:
        try:
            state = State(q["state"])
        except ValueError:
            known = ", ".join(s.value for s in State)
            raise ApiError(400, "invalid parameter", f"state: one of {known}") from None
    event = q.get("event")
    if event is not None and not 1 <= len(event) <= 200:
        raise ApiError(400, "invalid parameter", "event: 1..200 characters")
    limit = DEFAULT_DELIVERIES_LIMIT
    if "limit" in q:
        raw = q["limit"]
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
            raise ApiError(400, "invalid parameter", "limit: a positive integer")
        limit = int(raw)
        if not 1 <= limit <= MAX_DELIVERIES_LIMIT:
            raise ApiError(422, "invalid parameter", f"limit: 1..{MAX_DELIVERIES_LIMIT}")
    rows = await app.store.list_deliveries(state=state, event=event, limit=limit)
    return web.json_response({"deliveries": [_delivery_json(d, app) for d in rows]})


def _parts(raw: str) -> tuple[str, str, str | None]:
    msg = message_from_string(raw, policy=default_policy)
    assert isinstance(msg, EmailMessage)
    text, body_html = "", None
    for part in msg.walk():
        if part.get_content_maintype() != "text" or part.is_attachment():
            continue
        if part.get_content_type() == "text/plain" and not text:
            text = str(part.get_content())
        elif part.get_content_type() == "text/html" and body_html is None:
            body_html = str(part.get_content())
    return str(msg["Subject"] or ""), text, body_html


def _known_event(app: App, event_id: str) -> None:
    if event_id not in app.schedule.events:
        raise ApiError(404, "unknown event", f"no event '{echo(event_id)}'")


async def post_preview(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app[APP_KEY]
    data = await json_object(request)
    event_id = opt_str(data, "event")
    if event_id is None:
        raise ApiError(422, "invalid field", "event: required")
    reminder = opt_str(data, "reminder")
    recipient = opt_str(data, "recipient")
    on = opt_date(data, "date")
    _known_event(app, event_id)
    try:
        audience, rows = app.outbox.manual_rows(
            event_id, reminder_id=reminder, on=on, now=app.clock(), again=False, only=recipient
        )
        row = next(rows, None)
    except (RenderError, SendError) as exc:
        raise render_problem(exc) from None
    if row is None:
        who = f"'{echo(recipient)}' is not in" if recipient else "no recipient in"
        raise ApiError(422, "invalid field", f"recipient: {who} audience '{audience.name}'")
    subject, text, body_html = _parts(row.message)
    return web.json_response(
        {"subject": subject, "text": text, "html": body_html, "recipient": row.recipient}
    )


async def post_send(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app[APP_KEY]
    event_id = request.match_info["event_id"]
    data = await json_object(request, allow_empty=True)
    reminder = opt_str(data, "reminder")
    on = opt_date(data, "date")
    again = data.get("again", False)
    if not isinstance(again, bool):
        raise ApiError(422, "invalid field", "again: expected true or false")
    _known_event(app, event_id)
    try:
        created, size = await app.outbox.send_now(
            event_id, reminder_id=reminder, on=on, now=app.clock(), again=again
        )
    except (RenderError, SendError) as exc:
        raise render_problem(exc) from None
    if created:
        app.worker.wake()
    log.info(
        "manual send",
        extra={"action": "api_send", "event": event_id, "created": created, "audience": size},
    )
    return web.json_response({"created": created, "audience": size})


async def get_config(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app[APP_KEY]
    return web.json_response({"errors": list(app.config_errors), "warnings": list(app.warnings)})

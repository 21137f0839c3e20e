"""The HTTP side of `notifier run`: signed webhook triggers, the admin API, health and metrics.

Every error is JSON `{"error": ..., "detail": ...}`; bad input never yields a 500. Webhook
accepts are durable: the 202 goes out only after the rows are committed, and the commits of
concurrent requests are grouped (`AcceptBatcher`) so that one fsync serves many requests.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_string
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any
from urllib.parse import quote

from aiohttp import web

from notifier.cli import planned_json
from notifier.config import hook_secret
from notifier.constants import UPCOMING_DAYS
from notifier.errors import RenderError
from notifier.ical import calendar_feed
from notifier.models import Delivery, NewDelivery, State
from notifier.openapi import openapi_spec
from notifier.outbox import SendError, verify_unsubscribe_token
from notifier.schedules import Hook
from notifier.service import App
from notifier.webhooks import SignatureError, verify

log = logging.getLogger(__name__)

# Group commit: a batch stays open at most this long after its first accept, and only while
# loop iterations keep adding to it (BATCH_IDLE_SPINS without one close it); at most BATCH_MAX
# accepts share a transaction. Per-statement round trips, not fsyncs, are what it saves.
BATCH_WINDOW_SECONDS = 0.002
BATCH_IDLE_SPINS = 2
BATCH_MAX = 64
# /api/upcoming plans at most this many days per request (planning is CPU on the event loop).
MAX_UPCOMING_SPAN_DAYS = 1096
# Dates the planner is asked about; outside this range the calendars have no data anyway.
MIN_DATE = date(1901, 1, 1)
MAX_DATE = date(2999, 12, 31)
MAX_DELIVERIES_LIMIT = 1000
DEFAULT_DELIVERIES_LIMIT = 50
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
# Longest id echoed back in an error (the rest is the sender's problem, not our log's).
ECHO_MAX = 64
READY_PING_TIMEOUT = 2.0
MAX_TOKEN_LENGTH = 1024
# What `generate_latest` writes: the classic text format (newer clients name 1.0.0 "latest").
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

AcceptResult = tuple[list[int], bool]
AcceptFn = Callable[
    [Sequence[tuple[str, str, Sequence[NewDelivery]]]], Awaitable[list[AcceptResult]]
]


class ApiError(Exception):
    """An HTTP error answer: the middleware turns it into the JSON error body."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def error_response(
    status: int,
    error: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    body = {"error": error, "detail": detail, **(extra or {})}
    return web.json_response(body, status=status, headers=headers)


def _echo(value: str) -> str:
    return value if len(value) <= ECHO_MAX else value[:ECHO_MAX] + "…"


# --- group commit ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """A verified webhook request and the rows it asks for."""

    webhook_id: str
    due: datetime
    rows: Sequence[NewDelivery]


@dataclass(slots=True)
class _Pending:
    hook_id: str
    prepare: Callable[[], Prepared] = field(repr=False)
    future: asyncio.Future[tuple[Prepared, AcceptResult]] = field(repr=False)


class AcceptBatcher:
    """Collects webhook accepts for a few ms and commits them in one transaction.

    `accept` resolves only after the transaction holding its rows committed. Started and
    stopped by the web app (on_startup / on_cleanup); `stop` commits what is queued first.
    A plain list and one wake-up future, not an asyncio.Queue: at thousands of requests a
    second the queue's bookkeeping per item showed in profiles.
    """

    def __init__(
        self,
        accept: AcceptFn,
        *,
        window: float = BATCH_WINDOW_SECONDS,
        max_batch: int = BATCH_MAX,
    ) -> None:
        self._accept = accept
        self._window = window
        self._max = max_batch
        self._pending: list[_Pending] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name="notifier-accept-batcher")

    async def stop(self) -> None:
        self._closing = True
        if self._task is None:
            return
        self._wake()
        await self._task
        self._task = None

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def accept(
        self, hook_id: str, prepare: Callable[[], Prepared]
    ) -> tuple[Prepared, AcceptResult]:
        """Prepare one webhook request and commit its rows (or find its first request's).

        Returns what `prepare` made and (ids, duplicate); what `prepare` raises (an ApiError
        for a bad signature, say) is raised here. A batch prepares its items back to back,
        just before its commit: rendering one after another gave about 4% more accepts a
        second than rendering in each request's handler (processor caches stay warm).
        """
        if self._closing or self._loop is None:
            raise ApiError(503, "shutting down", "the service is stopping; retry later")
        future: asyncio.Future[tuple[Prepared, AcceptResult]] = self._loop.create_future()
        self._pending.append(_Pending(hook_id, prepare, future))
        self._wake()
        return await future

    async def _collect(self) -> list[_Pending]:
        """The next batch: what is pending, plus what handlers already running add within
        the window. A request whose bytes have arrived reaches `accept` within a loop
        iteration or two, so the batch closes as soon as one iteration adds nothing: a fixed
        wait would only add latency, as requests arriving during the commit form the next
        batch anyway.
        """
        assert self._loop is not None
        deadline = self._loop.time() + self._window
        idle, seen = 0, len(self._pending)
        while seen < self._max and idle < BATCH_IDLE_SPINS and not self._closing:
            await asyncio.sleep(0)
            if len(self._pending) == seen:
                idle += 1
            else:
                idle, seen = 0, len(self._pending)
            if self._loop.time() > deadline:
                break
        batch = self._pending[: self._max]
        del self._pending[: self._max]
        return batch

    async def _run(self) -> None:
        assert self._loop is not None
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup = self._loop.create_future()
                await self._wakeup
                continue
            await self._commit(self._prepare(await self._collect()))

    @staticmethod
    def _prepare(batch: list[_Pending]) -> list[tuple[_Pending, Prepared]]:
        """Prepare each item; an item that fails gets its error and leaves the batch."""
        ready = []
        for pending in batch:
            try:
                ready.append((pending, pending.prepare()))
            except Exception as exc:
                pending.future.set_exception(exc)
        return ready

    async def _commit(self, batch: list[tuple[_Pending, Prepared]]) -> None:
        if not batch:
            return
        items = [(p.hook_id, prepared.webhook_id, prepared.rows) for p, prepared in batch]
        try:
            results = await self._accept(items)
        except Exception as exc:
            if len(batch) > 1:
                # One bad item must not fail the others: commit them one by one.
                for item in batch:
                    await self._commit([item])
                return
            log.error(
                "webhook accept failed",
                extra={"action": "hook_accept_failed", "error": type(exc).__name__},
            )
            if not batch[0][0].future.done():
                batch[0][0].future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for (pending, prepared), result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result((prepared, result))


APP_KEY = web.AppKey("notifier_app", App)
BATCHER_KEY = web.AppKey("notifier_batcher", AcceptBatcher)


# --- middleware and helpers -----------------------------------------------------------------


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error as JSON; an unexpected exception is logged and answered 500, no traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(
            exc.status, exc.error, exc.detail, headers=exc.headers, extra=exc.extra
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow",)}
        detail = exc.text or exc.reason
        if exc.status == 413:
            detail = (
                f"the body is larger than {request.app[APP_KEY].settings.http.max_body_bytes} bytes"
            )
        return error_response(exc.status, exc.reason.lower(), detail, headers=headers)
    except Exception as exc:
        log.exception(
            "request failed",
            extra={
                "action": "http_error",
                "method": request.method,
                "route": _route_name(request),
                "error": type(exc).__name__,
            },
        )
        return error_response(500, "internal error", "an unexpected error; see the service log")


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "?"


def _require_admin(request: web.Request, *, allow_query: bool = False) -> None:
    """Bearer token check in constant time; 503 when no token is configured."""
    token = request.app[APP_KEY].settings.admin_token
    if token is None:
        raise ApiError(
            503, "admin API disabled", "set NOTIFIER_ADMIN_TOKEN to enable the admin API"
        )
    given = ""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip()
    elif allow_query:
        given = request.query.get("token", "")
    expected = token.get_secret_value().encode("utf-8")
    if not given or not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected):
        raise ApiError(
            401,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
            headers={"WWW-Authenticate": 'Bearer realm="notifier"'},
        )


def _parse_json(body: bytes) -> Any:
    try:
        # JSON between systems is UTF-8 (RFC 8259): decoding it here skips the guessing of
        # UTF-16 and UTF-32 that `json.loads` does for bytes.
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed JSON", f"the body is not valid JSON: {exc}") from None


async def _json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    body = await request.read()
    if allow_empty and not body.strip():
        return {}
    data = _parse_json(body)
    if not isinstance(data, dict):
        raise ApiError(400, "malformed JSON", "the body must be a JSON object")
    return data


def _opt_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(422, "invalid field", f"{name}: expected a non-empty string")
    return value


def _opt_date(data: Mapping[str, Any], name: str) -> date | None:
    value = _opt_str(data, name)
    if value is None:
        return None
    return _to_date(value, name)


def _to_date(value: str, name: str) -> date:
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400, "invalid parameter", f"{name}: {_echo(value)!r} is not a date (YYYY-MM-DD)"
        ) from None
    if not MIN_DATE <= parsed <= MAX_DATE:
        raise ApiError(422, "invalid parameter", f"{name}: must lie in {MIN_DATE}..{MAX_DATE}")
    return parsed


_MISSING_FIELD = re.compile(r"has no attribute '([^']+)'|'([^']+)' is undefined")


def _render_problem(exc: RenderError | SendError) -> ApiError:
    detail = str(exc)
    extra: dict[str, Any] = {}
    match = _MISSING_FIELD.search(detail)
    if isinstance(exc, RenderError) and match:
        missing = match.group(1) or match.group(2)
        extra["field"] = missing
        detail = f"missing field '{missing}' ({detail})"
    return ApiError(422, "cannot render", detail, extra=extra)


# --- webhooks -------------------------------------------------------------------------------


def _due(payload: Mapping[str, Any], app: App, now: float) -> datetime:
    """`send_at` (ISO 8601; naive means the service's zone) or now; never before now."""
    tz = app.settings.tz
    now_dt = datetime.fromtimestamp(now, tz)
    raw = payload.get("send_at")
    if raw is None:
        return now_dt
    if not isinstance(raw, str):
        raise ApiError(422, "invalid send_at", "send_at: expected an ISO 8601 date-time string")
    try:
        at = datetime.fromisoformat(raw)
        if at.tzinfo is None:
            at = at.replace(tzinfo=tz)
        at = at.astimezone(tz)
        at.timestamp()
    except (ValueError, OverflowError):
        raise ApiError(
            422, "invalid send_at", f"send_at: {_echo(raw)!r} is not an ISO 8601 date-time"
        ) from None
    return max(at, now_dt)


def _prepare_hook(
    app: App, hook: Hook, headers: Mapping[str, str], body: bytes, now: float
) -> Prepared:
    """Verify, parse and render one webhook request; ApiError says what is wrong with it."""
    secret = hook_secret(hook.secret_env)
    if secret is None:
        log.error(
            "hook secret not set",
            extra={"action": "hook_secret_missing", "hook": hook.id, "env": hook.secret_env},
        )
        raise ApiError(503, "hook not configured", "the hook's secret is not set on the server")
    try:
        webhook_id = verify(secret.get_secret_value(), headers, body, now=now)
    except SignatureError as exc:
        log.warning(
            "webhook rejected",
            extra={"action": "hook_rejected", "hook": hook.id, "reason": exc.reason},
        )
        raise ApiError(401, "invalid signature", exc.reason) from None
    except ValueError:
        log.error(
            "hook secret malformed",
            extra={"action": "hook_secret_invalid", "hook": hook.id, "env": hook.secret_env},
        )
        raise ApiError(503, "hook not configured", "the hook's secret is malformed") from None
    payload = _parse_json(body)
    if not isinstance(payload, dict):
        raise ApiError(400, "malformed JSON", "the payload must be a JSON object")
    due = _due(payload, app, now)
    try:
        rows = app.outbox.hook_rows(hook, webhook_id, payload, due)
    except (RenderError, SendError) as exc:
        raise _render_problem(exc) from None
    return Prepared(webhook_id, due, rows)


async def _accept_hook(request: web.Request, app: App, hook: Hook) -> web.Response:
    body = await request.read()  # raw bytes: the signature covers them exactly
    now = app.clock()
    headers = request.headers
    prepared, (ids, duplicate) = await request.app[BATCHER_KEY].accept(
        hook.id, lambda: _prepare_hook(app, hook, headers, body, now)
    )
    if not duplicate and ids and prepared.due.timestamp() <= app.clock():
        app.worker.wake()
    # Debug, not info: at thousands of requests a second the log line costs a tenth of the
    # request; the metrics count accepts, and rejections are logged as warnings.
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "webhook accepted",
            extra={
                "action": "hook_duplicate" if duplicate else "hook_accepted",
                "hook": hook.id,
                "webhook_id": prepared.webhook_id,
                "rows": len(ids),
                "due": prepared.due.isoformat(),
            },
        )
    # Written by hand: `json_response` (dumps, then encoding the text) cost 2 us more.
    listed = ", ".join(map(str, ids))
    answer = f'{{"ids": [{listed}], "duplicate": {"true" if duplicate else "false"}}}'
    return web.Response(body=answer.encode(), status=202, headers=_JSON_HEADERS)


async def post_hook(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    hook_id = request.match_info["hook_id"]
    hook = app.schedule.hooks.get(hook_id)
    status = 500
    try:
        if hook is None:
            raise ApiError(404, "unknown hook", f"no hook '{_echo(hook_id)}' is configured")
        response = await _accept_hook(request, app, hook)
        status = response.status
        return response
    except (ApiError, web.HTTPException) as exc:
        status = exc.status
        raise
    finally:
        # Label by configured hook only: unknown ids must not grow the metric without bound.
        app.metrics.count_webhook(hook.id if hook else "unknown", status)


# --- admin API ------------------------------------------------------------------------------


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
    _require_admin(request)
    app = request.app[APP_KEY]
    events = [_event_json(app, eid) for eid in sorted(app.schedule.events)]
    hooks = [
        {"id": h.id, "template": h.template, "audience": h.audience}
        for h in sorted(app.schedule.hooks.values(), key=lambda h: h.id)
    ]
    return web.json_response({"events": events, "hooks": hooks})


async def get_upcoming(request: web.Request) -> web.Response:
    _require_admin(request)
    app = request.app[APP_KEY]
    today = app.now().date()
    q = request.query
    first = _to_date(q["from"], "from") if "from" in q else today
    last = _to_date(q["to"], "to") if "to" in q else first + timedelta(days=UPCOMING_DAYS)
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
    _require_admin(request)
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
        raise ApiError(404, "unknown event", f"no event '{_echo(event_id)}'")


async def post_preview(request: web.Request) -> web.Response:
    _require_admin(request)
    app = request.app[APP_KEY]
    data = await _json_object(request)
    event_id = _opt_str(data, "event")
    if event_id is None:
        raise ApiError(422, "invalid field", "event: required")
    reminder = _opt_str(data, "reminder")
    recipient = _opt_str(data, "recipient")
    on = _opt_date(data, "date")
    _known_event(app, event_id)
    try:
        audience, rows = app.outbox.manual_rows(
            event_id, reminder_id=reminder, on=on, now=app.clock(), again=False, only=recipient
        )
        row = next(rows, None)
    except (RenderError, SendError) as exc:
        raise _render_problem(exc) from None
    if row is None:
        who = f"'{_echo(recipient)}' is not in" if recipient else "no recipient in"
        raise ApiError(422, "invalid field", f"recipient: {who} audience '{audience.name}'")
    subject, text, body_html = _parts(row.message)
    return web.json_response(
        {"subject": subject, "text": text, "html": body_html, "recipient": row.recipient}
    )


async def post_send(request: web.Request) -> web.Response:
    _require_admin(request)
    app = request.app[APP_KEY]
    event_id = request.match_info["event_id"]
    data = await _json_object(request, allow_empty=True)
    reminder = _opt_str(data, "reminder")
    on = _opt_date(data, "date")
    again = data.get("again", False)
    if not isinstance(again, bool):
        raise ApiError(422, "invalid field", "again: expected true or false")
    _known_event(app, event_id)
    try:
        created, size = await app.outbox.send_now(
            event_id, reminder_id=reminder, on=on, now=app.clock(), again=again
        )
    except (RenderError, SendError) as exc:
        raise _render_problem(exc) from None
    if created:
        app.worker.wake()
    log.info(
        "manual send",
        extra={"action": "api_send", "event": event_id, "created": created, "audience": size},
    )
    return web.json_response({"created": created, "audience": size})


async def get_config(request: web.Request) -> web.Response:
    _require_admin(request)
    app = request.app[APP_KEY]
    return web.json_response({"errors": list(app.config_errors), "warnings": list(app.warnings)})


async def get_calendar(request: web.Request) -> web.Response:
    _require_admin(request, allow_query=True)
    app = request.app[APP_KEY]
    now = app.now()
    body = calendar_feed(
        app.schedule,
        today=now.date(),
        tz=app.settings.tz,
        name=app.settings.org_name,
        now=now.astimezone(UTC),
    )
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


# --- unsubscribe (RFC 8058 one-click) -------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>退订 Unsubscribe</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto; padding: 0 1em">
{content}
</body></html>
"""


def _page(content: str, status: int = 200) -> web.Response:
    return web.Response(text=_PAGE.format(content=content), status=status, content_type="text/html")


def _unsubscribe_email(app: App, token: str) -> str:
    # compare_digest refuses non-ASCII strings: such a token is simply not ours.
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        email = None
    else:
        email = verify_unsubscribe_token(app.outbox.unsubscribe_secret, token)
    if email is None:
        raise ApiError(400, "invalid token", "this unsubscribe link is invalid or was altered")
    return email


async def get_unsubscribe(request: web.Request) -> web.Response:
    """A confirmation page only: link scanners fetch with GET, so GET never unsubscribes."""
    app = request.app[APP_KEY]
    token = request.query.get("token", "")
    email = _unsubscribe_email(app, token)
    action = f"unsubscribe?token={quote(token, safe='')}"
    return _page(
        f"<h1>退订 Unsubscribe</h1>"
        f"<p>确认不再向 <b>{html.escape(email)}</b> 发送"
        f"{html.escape(app.settings.org_name)}的邮件？</p>"
        f"<p>Stop sending these emails to <b>{html.escape(email)}</b>?</p>"
        f'<form method="post" action="{html.escape(action)}">'
        '<input type="hidden" name="page" value="1">'
        '<button type="submit">确认退订 Unsubscribe</button></form>'
    )


async def post_unsubscribe(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    token = request.query.get("token", "")
    form: Mapping[str, Any] = {}
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
    if not token and isinstance(form.get("token"), str):
        token = str(form["token"])
    email = _unsubscribe_email(app, token)
    await app.store.unsubscribe(email, now=app.clock(), source="one-click")
    log.info("unsubscribed", extra={"action": "unsubscribed", "source": "one-click"})
    if form.get("page"):
        return _page(
            "<h1>已退订 Unsubscribed</h1>"
            f"<p>{html.escape(email)} 将不再收到这些邮件。</p>"
            f"<p>{html.escape(email)} will receive no more of these emails.</p>"
        )
    return web.json_response({"unsubscribed": email})


# --- operations -----------------------------------------------------------------------------


async def get_healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def get_readyz(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    reasons: list[str] = []
    try:
        await asyncio.wait_for(app.store.ping(), READY_PING_TIMEOUT)
    except Exception as exc:
        reasons.append(f"database unreachable ({type(exc).__name__})")
    if app.config_errors:
        reasons.append(
            f"configuration on disk is invalid ({len(app.config_errors)} problems);"
            " running the last good one"
        )
    if reasons:
        return error_response(503, "not ready", "; ".join(reasons), extra={"reasons": reasons})
    return web.json_response({"status": "ready"})


async def get_metrics(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        app.metrics.set_counts(await app.store.count_by_state())
    except Exception as exc:
        log.warning(
            "ledger counts unavailable",
            extra={"action": "metrics_counts", "error": type(exc).__name__},
        )
    return web.Response(body=app.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_spec())


# --- assembly -------------------------------------------------------------------------------


def create_web_app(app: App) -> web.Application:
    """The aiohttp application over an opened `App` (also what tests give the test client)."""
    web_app = web.Application(
        client_max_size=app.settings.http.max_body_bytes, middlewares=[json_errors]
    )
    web_app[APP_KEY] = app
    batcher = AcceptBatcher(lambda items: app.store.accept_hooks(items, now=app.clock()))
    web_app[BATCHER_KEY] = batcher

    async def start_batcher(_: web.Application) -> None:
        batcher.start()

    async def stop_batcher(_: web.Application) -> None:
        await batcher.stop()

    web_app.on_startup.append(start_batcher)
    web_app.on_cleanup.append(stop_batcher)
    web_app.add_routes(
        [
            web.post("/hooks/{hook_id}", post_hook),
            web.get("/api/events", get_events),
            web.get("/api/upcoming", get_upcoming),
            web.get("/api/deliveries", get_deliveries),
            web.post("/api/preview", post_preview),
            web.post("/api/events/{event_id}/send", post_send),
            web.get("/api/config", get_config),
            web.get("/calendar.ics", get_calendar),
            web.get("/unsubscribe", get_unsubscribe),
            web.post("/unsubscribe", post_unsubscribe),
            web.get("/healthz", get_healthz),
            web.get("/readyz", get_readyz),
            web.get("/metrics", get_metrics),
            web.get("/openapi.json", get_openapi),
        ]
    )
    return web_app


async def start_http(app: App) -> web.AppRunner:
    """Listen on settings.http.host/port (port 0: any free port, see `bound_port`)."""
    http = app.settings.http
    runner = web.AppRunner(
        create_web_app(app),
        handle_signals=False,
        handler_cancellation=False,  # a client disconnect must not cancel a commit
        shutdown_timeout=app.settings.shutdown_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, http.host, http.port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info(
        f"HTTP listening on http://{http.host}:{bound_port(runner)}",
        extra={"action": "http_started", "host": http.host, "port": bound_port(runner)},
    )
    return runner


def bound_port(runner: web.BaseRunner) -> int:
    """The TCP port the runner's first site listens on (useful with port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the HTTP runner has no TCP site")


__all__ = [
    "AcceptBatcher",
    "ApiError",
    "bound_port",
    "create_web_app",
    "error_response",
    "start_http",
]

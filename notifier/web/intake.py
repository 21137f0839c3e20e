"""Signed webhook triggers (`POST /hooks/{id}`).

Accepts are durable: the 202 goes out only after the rows are committed, and the commits of
concurrent requests are grouped (`AcceptBatcher`) so that one fsync serves many requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from email_validator import EmailNotValidError, validate_email

from notifier.errors import RenderError, SendError, StoreUnavailable
from notifier.ledger.models import NewDelivery
from notifier.schedule.model import Hook
from notifier.service import App
from notifier.signing import SignatureError, verify
from notifier.web.common import (
    APP_KEY,
    BATCH_IDLE_SPINS,
    BATCH_MAX,
    BATCH_WINDOW_SECONDS,
    JSON_HEADERS,
    ApiError,
    echo,
    render_problem,
)

log = logging.getLogger(__name__)

# A hook's `send_at` at most this far ahead. A webhook triggers a near send (a visit next
# week, a deadline next month); a date further out is a typo (2062 for 2026, year 9999) that
# would sit in the ledger as pending for ever. 400 days leaves room for "same day next year".
MAX_SEND_AHEAD = timedelta(days=400)
# Control characters no payload text needs: C0 but TAB, LF and CR; DEL; C1 (U+0080-U+009F,
# which mail clients may act on). A field that ends up in a header (a `to` address or name)
# may hold none at all, TAB, LF and CR included.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_HEADER_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A body holding none of these has no control character in any of its strings: JSON escapes
# C0 (`\u000b`, RFC 8259 forbids them raw) and writes DEL and C1 either way.
_MAY_HOLD_CONTROL = re.compile(r"\\u|[\x7f-\x9f]")

AcceptResult = tuple[list[int], bool]
AcceptFn = Callable[
    [Sequence[tuple[str, str, Sequence[NewDelivery]]]], Awaitable[list[AcceptResult]]
]


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
            if len(batch) > 1 and not isinstance(exc, StoreUnavailable):
                # One bad item must not fail the others: commit them one by one. (Not when
                # the database is away: each would wait for it in turn; all answer 503.)
                for item in batch:
                    await self._commit([item])
                return
            log.error(
                "webhook accept failed",
                extra={"action": "hook_accept_failed", "error": type(exc).__name__},
            )
            for pending, _ in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for (pending, prepared), result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result((prepared, result))


BATCHER_KEY = web.AppKey("notifier_batcher", AcceptBatcher)


class _Refused:
    """A number JSON does not allow (NaN, Infinity) or a float does not hold (1e309), kept
    in place while parsing so that the check after it can name its field."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _invalid(name: str, problem: str, error: str = "invalid payload") -> ApiError:
    return ApiError(422, error, f"payload.{name}: {problem}", extra={"field": name})


def parse_payload(body: bytes) -> Any:
    """The payload as JSON, refused (422, naming the field) when it holds a number JSON or a
    float cannot (NaN, Infinity, 1e309) or a control character; 400 when it is no JSON."""
    flagged: list[_Refused] = []

    def constant(text: str) -> _Refused:
        flagged.append(_Refused(text))
        return flagged[-1]

    def number(text: str) -> float | _Refused:
        value = float(text)
        if math.isfinite(value):
            return value
        flagged.append(_Refused(text))
        return flagged[-1]

    try:
        # JSON between systems is UTF-8 (RFC 8259): no guessing of UTF-16 or UTF-32.
        text = body.decode("utf-8")
        payload = json.loads(text, parse_constant=constant, parse_float=number)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed JSON", f"the body is not valid JSON: {exc}") from None
    if flagged or _MAY_HOLD_CONTROL.search(text):
        _check_values(payload)
    return payload


def _check_values(payload: Any) -> None:
    """Walk the payload (without recursion: JSON may nest deeper than Python's stack) and
    refuse the first refused number or control character, naming its field."""
    stack: list[tuple[str, Any]] = [("", payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Refused):
            raise _invalid(
                path, f"{value.text} is not a number JSON allows (RFC 8259) or a float holds"
            )
        if isinstance(value, str):
            if found := _CONTROL.search(value):
                raise _invalid(path, _control_problem(found.group()))
        elif isinstance(value, dict):
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                if found := _CONTROL.search(key):
                    raise _invalid(where, "the key " + _control_problem(found.group()))
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def _control_problem(char: str) -> str:
    return f"contains the control character U+{ord(char):04X} (不允许控制字符)"


def _recipients(payload: dict[str, Any]) -> dict[str, Any]:
    """`to` made fit for a header and for either way out (SMTP or the mail drop).

    No control character at all in an address or a name (they become the `To:` header). An
    internationalised domain is written in its ASCII form (IDNA, `xn--`), which every server
    takes; an address whose local part is not ASCII would need SMTPUTF8 end to end, which
    notifier does not send, so it is refused here rather than failing at every retry.
    """
    to = payload.get("to")
    if not isinstance(to, list):
        return payload
    changed = list(to)
    for i, item in enumerate(to):
        email = (
            item if isinstance(item, str) else item.get("email") if isinstance(item, dict) else None
        )
        where = f"to[{i}]" if isinstance(item, str) else f"to[{i}].email"
        if isinstance(item, dict) and isinstance(name := item.get("name"), str):
            if found := _HEADER_CONTROL.search(name):
                raise _invalid(f"to[{i}].name", _control_problem(found.group()))
        if not isinstance(email, str):
            continue  # the outbox says what is wrong with it
        if found := _HEADER_CONTROL.search(email):
            raise _invalid(where, _control_problem(found.group()))
        if email.isascii():
            continue
        try:
            ascii_email = validate_email(email, check_deliverability=False).ascii_email
        except EmailNotValidError:
            continue  # the outbox says what is wrong with it
        if ascii_email is None:
            raise _invalid(
                where,
                "an address whose part before @ is not ASCII needs SMTPUTF8, which this "
                "service does not send; give the recipient's ASCII address "
                "(不支持非 ASCII 用户名的邮箱地址)",
                "unsupported address",
            )
        changed[i] = ascii_email if isinstance(item, str) else {**item, "email": ascii_email}
    return {**payload, "to": changed} if changed != to else payload


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
            422, "invalid send_at", f"send_at: {echo(raw)!r} is not an ISO 8601 date-time"
        ) from None
    if at > now_dt + MAX_SEND_AHEAD:
        raise ApiError(
            422,
            "invalid send_at",
            f"send_at: {echo(raw)!r} is more than {MAX_SEND_AHEAD.days} days ahead (发送时间过远)",
            extra={"field": "send_at"},
        )
    return max(at, now_dt)


def _prepare_hook(
    app: App, hook: Hook, headers: Mapping[str, str], body: bytes, now: float
) -> Prepared:
    """Verify, parse and render one webhook request; ApiError says what is wrong with it."""
    secret = app.hook_secrets.get(hook.secret_env)
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
    payload = parse_payload(body)
    if not isinstance(payload, dict):
        raise ApiError(400, "malformed JSON", "the payload must be a JSON object")
    if hook.audience is None:
        payload = _recipients(payload)
    due = _due(payload, app, now)
    try:
        rows = app.hook_rows(hook, webhook_id, payload, due)
    except (RenderError, SendError) as exc:
        raise render_problem(exc) from None
    return Prepared(webhook_id, due, rows)


async def _accept_hook(request: web.Request, app: App, hook: Hook) -> web.Response:
    body = await request.read()  # raw bytes: the signature covers them exactly
    now = app.clock()
    headers = request.headers
    prepared, (ids, duplicate) = await request.app[BATCHER_KEY].accept(
        hook.id, lambda: _prepare_hook(app, hook, headers, body, now)
    )
    if not duplicate and ids and prepared.due.timestamp() <= app.clock():
        app.wake_workers()
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
    return web.Response(body=answer.encode(), status=202, headers=JSON_HEADERS)


async def post_hook(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    hook_id = request.match_info["hook_id"]
    hook = app.schedule.hooks.get(hook_id)
    status = 500
    try:
        if hook is None:
            raise ApiError(404, "unknown hook", f"no hook '{echo(hook_id)}' is configured")
        response = await _accept_hook(request, app, hook)
        status = response.status
        return response
    except (ApiError, web.HTTPException) as exc:
        status = exc.status
        raise
    finally:
        # Label by configured hook only: unknown ids must not grow the metric without bound.
        app.metrics.count_webhook(hook.id if hook else "unknown", status)

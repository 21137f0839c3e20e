"""What every part of the HTTP side shares: the app key, JSON errors, auth and input helpers.

Every error is JSON `{"error": ..., "detail": ...}`; bad input never yields a 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from notifier.compose.records import DeliveryRecord
from notifier.constants import DB_RETRY_AFTER_SECONDS
from notifier.errors import RenderError, SendError, StoreError
from notifier.service import App
from notifier.web.auth import (
    LIMITER_KEY,
    SCOPE_ADMIN,
    client_address,
    retry_after,
    token_matches,
)

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
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
# Longest id echoed back in an error (the rest is the sender's problem, not our log's).
ECHO_MAX = 64
READY_PING_TIMEOUT = 2.0
MAX_TOKEN_LENGTH = 1024
# What `generate_latest` writes: the classic text format (newer clients name 1.0.0 "latest").
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


def echo(value: str) -> str:
    return value if len(value) <= ECHO_MAX else value[:ECHO_MAX] + "…"


APP_KEY = web.AppKey("notifier_app", App)


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
    except StoreError as exc:
        # Weather, not a bug: nothing was committed for this request; the client retries.
        log.warning(
            "request refused: database unavailable",
            extra={
                "action": "http_db_unavailable",
                "route": _route_name(request),
                "error": str(exc),
            },
        )
        return database_unavailable()
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


def database_unavailable() -> web.Response:
    """503 with Retry-After: the database is away (its name and error are in the log)."""
    return error_response(
        503,
        "database unavailable",
        "the ledger database is unavailable for now; nothing was recorded, retry later",
        headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
    )


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "?"


def bearer(request: web.Request) -> str:
    """The `Authorization: Bearer` token, or ""."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def limited_token(request: web.Request, scope: str, given: str, secret: SecretStr) -> bool:
    """Whether `given` is `secret`, through the failed-token limit of `scope` (auth.py).

    No token at all is no guess: False without asking the database. Past the limit a 429
    with Retry-After, the token unseen; a wrong token counts as a failure.
    """
    if not given or len(given) > MAX_TOKEN_LENGTH:
        return False
    app = request.app[APP_KEY]
    attempt = await request.app[LIMITER_KEY].attempt(
        scope, client_address(request), now=app.clock(), check=lambda: token_matches(given, secret)
    )
    if attempt.wait > 0:
        seconds = retry_after(attempt.wait)
        log.warning(
            "token refused: too many failures",
            extra={"action": "token_limited", "scope": scope, "route": _route_name(request)},
        )
        raise ApiError(
            429,
            "too many attempts",
            f"too many wrong tokens from this address: try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    if not attempt.ok:
        log.warning(
            "wrong token",
            extra={"action": "token_failed", "scope": scope, "route": _route_name(request)},
        )
    return attempt.ok


async def require_admin(request: web.Request) -> None:
    """The admin bearer token, through the failed-token limit; 503 when none is configured."""
    token = request.app[APP_KEY].settings.admin_token
    if token is None:
        raise ApiError(
            503, "admin API disabled", "set NOTIFIER_ADMIN_TOKEN to enable the admin API"
        )
    if not await limited_token(request, SCOPE_ADMIN, bearer(request), token):
        raise ApiError(
            401,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
            headers={"WWW-Authenticate": 'Bearer realm="notifier"'},
        )


def parse_json(body: bytes) -> Any:
    try:
        # JSON between systems is UTF-8 (RFC 8259): decoding it here skips the guessing of
        # UTF-16 and UTF-32 that `json.loads` does for bytes.
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed JSON", f"the body is not valid JSON: {exc}") from None


_MISSING_FIELD = re.compile(r"has no attribute '([^']+)'|'([^']+)' is undefined")


def render_problem(exc: RenderError | SendError) -> ApiError:
    detail = str(exc)
    extra: dict[str, Any] = {}
    match = _MISSING_FIELD.search(detail)
    if isinstance(exc, RenderError) and match:
        missing = match.group(1) or match.group(2)
        extra["field"] = missing
        detail = f"missing field '{missing}' ({detail})"
    return ApiError(422, "cannot render", detail, extra=extra)


async def stream_record(
    request: web.Request, record: DeliveryRecord, *, headers: Mapping[str, str] | None = None
) -> web.StreamResponse:
    """Send an export as it is made (API and console alike): 100,000 rows never sit in
    memory, and the first bytes leave before the last row is read."""
    response = web.StreamResponse(
        headers={
            "Content-Type": record.content_type,
            "Content-Disposition": f'attachment; filename="{record.filename}"',
            "Cache-Control": "no-store",
            **(headers or {}),
        }
    )
    await response.prepare(request)
    async for chunk in record.chunks():
        await response.write(chunk)
    await response.write_eof()
    log.info(
        "deliveries exported",
        extra={"action": "deliveries_export", "rows": record.rows, "format": record.fmt},
    )
    return response

"""Operations: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from notifier.constants import DB_RETRY_AFTER_SECONDS
from notifier.web.auth import SCOPE_ADMIN
from notifier.web.common import (
    APP_KEY,
    METRICS_CONTENT_TYPE,
    READY_PING_TIMEOUT,
    ApiError,
    bearer,
    error_response,
    limited_token,
)
from notifier.web.openapi import openapi_spec

log = logging.getLogger(__name__)


async def get_healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def get_readyz(request: web.Request) -> web.Response:
    """Ready or not, by component. Anonymous callers (load balancers, probes) get component
    names and states only: the errors' own text (a database's, a platform's) names hosts,
    paths and codes that are none of their business. The admin bearer token (through the
    failed-token limit) adds the full detail."""
    app = request.app[APP_KEY]
    admin = app.settings.admin_token
    detailed = admin is not None and await limited_token(
        request, SCOPE_ADMIN, bearer(request), admin
    )
    if bearer(request) and not detailed:
        raise ApiError(
            401,
            "unauthorized",
            "the detail of /readyz needs the admin token (without a token: states only)",
            headers={"WWW-Authenticate": 'Bearer realm="notifier"'},
        )
    states: dict[str, str] = {}
    reasons: list[str] = []
    try:
        await asyncio.wait_for(app.store.ping(), READY_PING_TIMEOUT)
    except Exception as exc:
        states["database"] = "unreachable"
        reasons.append(f"database unreachable ({type(exc).__name__})")
    else:
        # A read can pass while writes fail (SQLite locked, disk full): the loops know.
        problem = app.db_problem()
        if problem is not None:
            states["database"] = "unavailable"
            reasons.append(f"database unavailable: {problem.splitlines()[0][:200]}")
    if app.config_errors:
        states["configuration"] = "invalid, running the last good one"
        reasons.append(
            f"configuration on disk is invalid ({len(app.config_errors)} problems);"
            " running the last good one"
        )
    for cid, status in sorted(app.channels.statuses.items()):
        if status.config_error:
            states[f"channel {cid}"] = "disabled" if status.disabled else "configuration error"
    reasons.extend(app.channels.problems())
    # A send the planner cannot make sends nothing: someone must fix its template or audience.
    # Its line names the send and when it is recorded missed, never why (the console has
    # that): safe for anonymous callers too.
    for unmade in app.unmade_sends():
        states[f"send {unmade.plan_key}"] = unmade.describe()
        reasons.append(unmade.describe())
    if not states:
        return web.json_response({"status": "ready"})
    if not detailed:
        reasons = [f"{name}: {state}" for name, state in states.items()]
    return error_response(
        503,
        "not ready",
        "; ".join(reasons),
        extra={"reasons": reasons, "components": states},
        headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
    )


async def get_metrics(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        if app.metrics.counts_due(time.monotonic()):
            app.metrics.set_counts(await app.store.count_by_state())
    except Exception as exc:
        log.warning(
            "ledger counts unavailable",
            extra={"action": "metrics_counts", "error": type(exc).__name__},
        )
    return web.Response(body=app.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_spec())

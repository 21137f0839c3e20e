"""Operations: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from notifier.constants import DB_RETRY_AFTER_SECONDS
from notifier.web.common import APP_KEY, METRICS_CONTENT_TYPE, READY_PING_TIMEOUT, error_response
from notifier.web.openapi import openapi_spec

log = logging.getLogger(__name__)


async def get_healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def get_readyz(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    reasons: list[str] = []
    try:
        await asyncio.wait_for(app.store.ping(), READY_PING_TIMEOUT)
    except Exception as exc:
        reasons.append(f"database unreachable ({type(exc).__name__})")
    else:
        # A read can pass while writes fail (SQLite locked, disk full): the loops know.
        problem = app.db_problem()
        if problem is not None:
            reasons.append(f"database unavailable: {problem.splitlines()[0][:200]}")
    if app.config_errors:
        reasons.append(
            f"configuration on disk is invalid ({len(app.config_errors)} problems);"
            " running the last good one"
        )
    reasons.extend(app.channels.problems())
    # A send the planner cannot make sends nothing: someone must fix its template or audience.
    reasons.extend(u.describe() for u in app.unmade_sends())
    if reasons:
        return error_response(
            503,
            "not ready",
            "; ".join(reasons),
            extra={"reasons": reasons},
            headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
        )
    return web.json_response({"status": "ready"})


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

"""Assembly: the aiohttp application over an opened `App`, and its listener."""

from __future__ import annotations

import logging

from aiohttp import web

from notifier.service import App
from notifier.web.api import (
    delete_suppression,
    get_config,
    get_deliveries,
    get_deliveries_export,
    get_events,
    get_suppressions,
    get_upcoming,
    post_preview,
    post_send,
)
from notifier.web.common import APP_KEY, json_errors
from notifier.web.console import announce_signin_link
from notifier.web.console_routes import setup_console
from notifier.web.feed import get_calendar, get_workdays
from notifier.web.intake import BATCHER_KEY, AcceptBatcher, post_hook
from notifier.web.ops import get_healthz, get_metrics, get_openapi, get_readyz
from notifier.web.unsubscribe import get_unsubscribe, post_unsubscribe

log = logging.getLogger(__name__)


def create_web_app(app: App) -> web.Application:
    """The aiohttp application over an opened `App` (also what tests give the test client)."""
    web_app = web.Application(
        client_max_size=app.settings.http.max_body_bytes, middlewares=[json_errors]
    )
    web_app[APP_KEY] = app
    batcher = AcceptBatcher(app.accept_hooks)
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
            web.get("/api/deliveries/export", get_deliveries_export),
            web.post("/api/preview", post_preview),
            web.post("/api/events/{event_id}/send", post_send),
            web.get("/api/config", get_config),
            web.get("/api/suppressions", get_suppressions),
            web.delete("/api/suppressions/{address}", delete_suppression),
            web.get("/calendar.ics", get_calendar),
            web.get("/calendar/workdays.ics", get_workdays),
            web.get("/unsubscribe", get_unsubscribe),
            web.post("/unsubscribe", post_unsubscribe),
            web.get("/healthz", get_healthz),
            web.get("/readyz", get_readyz),
            web.get("/metrics", get_metrics),
            web.get("/openapi.json", get_openapi),
        ]
    )
    setup_console(web_app, app)
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
    await announce_signin_link(runner.app, http.host, bound_port(runner))
    return runner


def bound_port(runner: web.BaseRunner) -> int:
    """The TCP port the runner's first site listens on (useful with port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the HTTP runner has no TCP site")

"""The console's assembly: templates, static files and routes on the HTTP application.

Apart from `console` (sessions, guard, rendering) so that `console_pages` can import those
and this module can import the pages, with no cycle.
"""

from __future__ import annotations

import aiohttp_jinja2
import jinja2
from aiohttp import web

import notifier.web.console_audience_edit as lists
import notifier.web.console_edit as editing
import notifier.web.console_holidays as holidays
import notifier.web.console_pages as pages
import notifier.web.console_suppressions as suppressions
from notifier.service import App
from notifier.web.auth import LIMITER_KEY, SIGNIN_LINK_PATH, Auth
from notifier.web.console import (
    AUTH_KEY,
    CONSOLE_STORE_KEY,
    HERE,
    VIEWS_KEY,
    Handler,
    get_signin,
    get_signin_link,
    guard,
    post_signin,
    post_signout,
)
from notifier.web.console_views import ViewCache


def setup_console(web_app: web.Application, app: App) -> None:
    """Templates, static files and the console's routes on the HTTP application."""
    env = aiohttp_jinja2.setup(
        web_app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md"] = lambda d: f"{d.month}月{d.day}日"
    store = app.console
    web_app[CONSOLE_STORE_KEY] = store
    auth = Auth(app.settings, store, server_secret=app.outbox.unsubscribe_secret)
    web_app[AUTH_KEY] = auth
    web_app[LIMITER_KEY] = auth.limiter  # the admin API and the calendar feed count there too
    web_app[VIEWS_KEY] = ViewCache()
    page = guard

    def act(handler: Handler) -> Handler:
        return guard(handler, action=True)

    def edit(handler: Handler) -> Handler:
        return guard(handler, edit=True)

    web_app.add_routes(
        [
            web.get("/", page(pages.get_overview)),
            web.get("/calendar", page(pages.get_calendar_page)),
            web.get("/events", page(pages.get_events_page)),
            web.get("/events/new", page(editing.get_new_event)),
            web.post("/events/new", edit(editing.post_edit_event)),
            web.get("/events/{event_id}", page(pages.get_event_page)),
            web.get("/events/{event_id}/edit", page(editing.get_edit_event)),
            web.post("/events/{event_id}/edit", edit(editing.post_edit_event)),
            web.get("/events/{event_id}/delete", page(editing.get_delete_event)),
            web.post("/events/{event_id}/delete", edit(editing.post_delete_event)),
            web.get("/events/{event_id}/history", page(editing.get_event_history)),
            web.get("/history", page(editing.get_file_history)),
            web.get("/history/{version_id}", page(editing.get_version)),
            web.get("/history/{version_id}/revert", page(editing.get_revert)),
            web.post("/history/{version_id}/revert", edit(editing.post_revert)),
            web.get("/events/{event_id}/preview", page(pages.get_preview)),
            web.get("/events/{event_id}/send", page(pages.get_send_confirm)),
            web.post("/events/{event_id}/send", act(pages.post_send_now)),
            web.get("/deliveries", page(pages.get_deliveries_page)),
            web.get("/deliveries/export", page(pages.get_deliveries_export)),
            web.get("/deliveries/{delivery_id}", page(pages.get_delivery_page)),
            web.post("/deliveries/{delivery_id}/retry", act(pages.post_retry)),
            web.post("/deliveries/{delivery_id}/resend", act(pages.post_resend)),
            web.get("/audiences", page(pages.get_audiences_page)),
            web.post("/audiences/resubscribe", act(pages.post_resubscribe)),
            web.get("/suppressions", page(suppressions.get_suppressions_page)),
            web.post("/suppressions/remove", act(suppressions.post_unsuppress)),
            web.get("/audiences/{name}/edit", page(lists.get_audience_edit)),
            web.post(
                "/audiences/{name}/edit", guard(lists.post_audience_edit, edit=True, upload=True)
            ),
            web.get("/config", page(pages.get_config_page)),
            web.get("/config/holidays", page(holidays.get_holidays_import)),
            web.post("/config/holidays/preview", act(holidays.post_holidays_preview)),
            web.post("/config/holidays/save", act(holidays.post_holidays_save)),
            web.get("/audit", guard(pages.get_audit_page, admin_page=True)),
            web.get("/signin", page(get_signin)),
            web.post("/signin", post_signin),
            web.get(SIGNIN_LINK_PATH, get_signin_link),
            web.post("/signout", page(post_signout)),
            web.static("/static", HERE / "static"),
        ]
    )

"""The calendar feed (`/calendar.ics`), behind its own read-only token.

Calendar clients can only subscribe to a URL, so the token travels in the query string and
ends up in the clients' settings and in proxy logs. That is why it is not the admin token:
`NOTIFIER_CALENDAR_TOKEN` opens the feed and nothing else, and the admin token is refused here.
"""

from __future__ import annotations

from datetime import UTC

from aiohttp import web

from notifier.ical import calendar_feed
from notifier.web.auth import SCOPE_CALENDAR
from notifier.web.common import APP_KEY, ApiError, bearer, limited_token


async def require_calendar_token(request: web.Request) -> None:
    """`?token=` (or a Bearer header) must be the calendar token, compared in constant time,
    through the failed-token limit (scope "calendar": 429 after too many wrong ones)."""
    token = request.app[APP_KEY].settings.calendar_token
    if token is None:
        raise ApiError(
            503,
            "calendar feed disabled",
            "set NOTIFIER_CALENDAR_TOKEN to enable /calendar.ics?token=... "
            "(设置日历令牌以开启日历订阅)",
        )
    given = request.query.get("token", "") or bearer(request)
    if not await limited_token(request, SCOPE_CALENDAR, given, token):
        raise ApiError(
            401,
            "unauthorized",
            "subscribe with /calendar.ics?token=<NOTIFIER_CALENDAR_TOKEN> "
            "(the admin token is not accepted here)",
        )


async def get_calendar(request: web.Request) -> web.Response:
    await require_calendar_token(request)
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
        # `private`: a shared cache must not hand one subscriber's feed to another URL.
        headers={"Cache-Control": "private, no-cache"},
    )

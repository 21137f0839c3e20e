"""The calendar feed (`/calendar.ics`), behind its own read-only token.

Calendar clients can only subscribe to a URL, so the token travels in the query string and
ends up in the clients' settings and in proxy logs. That is why it is not the admin token:
`NOTIFIER_CALENDAR_TOKEN` opens the feed and nothing else, and the admin token is refused here.
"""

from __future__ import annotations

import hmac
from datetime import UTC

from aiohttp import web

from notifier.schedule.ical import calendar_feed
from notifier.web.common import APP_KEY, MAX_TOKEN_LENGTH, ApiError


def require_calendar_token(request: web.Request) -> None:
    """`?token=` (or a Bearer header) must be the calendar token, compared in constant time."""
    token = request.app[APP_KEY].settings.calendar_token
    if token is None:
        raise ApiError(
            503,
            "calendar feed disabled",
            "set NOTIFIER_CALENDAR_TOKEN to enable /calendar.ics?token=... "
            "(设置日历令牌以开启日历订阅)",
        )
    given = request.query.get("token", "")
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if not given and scheme.lower() == "bearer":
        given = value.strip()
    expected = token.get_secret_value().encode("utf-8")
    if (
        not given
        or len(given) > MAX_TOKEN_LENGTH
        or not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected)
    ):
        raise ApiError(
            401,
            "unauthorized",
            "subscribe with /calendar.ics?token=<NOTIFIER_CALENDAR_TOKEN> "
            "(the admin token is not accepted here)",
        )


async def get_calendar(request: web.Request) -> web.Response:
    require_calendar_token(request)
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

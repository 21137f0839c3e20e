"""The calendar feeds (`/calendar.ics`, `/calendar/workdays.ics`), behind their own read-only
token.

Calendar clients can only subscribe to a URL, so the token travels in the query string and
ends up in the clients' settings and in proxy logs. That is why it is not the admin token:
`NOTIFIER_CALENDAR_TOKEN` opens the feeds and nothing else, and the admin token is refused here.
Each event's SEQUENCE comes from the ledger (`Store.ical_sequences`), so a changed event is
updated by the subscribers' clients, whichever instance serves it.
"""

from __future__ import annotations

from datetime import UTC, date

import icalendar
from aiohttp import web

from notifier.schedule.ical import (
    WORKDAYS_PRODID,
    Revision,
    digest,
    feed_events,
    render_feed,
    workday_events,
)
from notifier.service import App
from notifier.web.auth import SCOPE_CALENDAR
from notifier.web.common import APP_KEY, ApiError, bearer, limited_token

# The workday feed's reach: this year and the next (the notice for the next year comes in
# November; its December days are in this year's end).
WORKDAY_FEED_YEARS = 2


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
    events = feed_events(
        app.schedule, today=now.date(), tz=app.settings.tz, now=now.astimezone(UTC)
    )
    return await _feed(app, events, name=app.settings.org_name)


async def get_workdays(request: web.Request) -> web.Response:
    """Days off and make-up workdays, this year and the next, as all-day events."""
    await require_calendar_token(request)
    app = request.app[APP_KEY]
    now = app.now()
    events = workday_events(
        app.schedule.calendar,
        first=date(now.year, 1, 1),
        last=date(now.year + WORKDAY_FEED_YEARS - 1, 12, 31),
        now=now.astimezone(UTC),
        files=app.schedule.holiday_files,
    )
    name = f"{app.settings.org_name} 工作日安排 Workdays"
    return await _feed(app, events, name=name, prodid=WORKDAYS_PRODID)


async def _feed(
    app: App, events: list[icalendar.Event], *, name: str, prodid: str | None = None
) -> web.Response:
    """The feed with each event's SEQUENCE from the ledger (bumped where the event changed)."""
    stored = await app.store.ical_sequences(
        {str(e["uid"]): digest(e) for e in events}, now=app.clock()
    )
    revisions = {uid: Revision(seq, at) for uid, (seq, at) in stored.items()}
    extra = {"prodid": prodid} if prodid else {}
    body = render_feed(events, name=name, tz=app.settings.tz, revisions=revisions, **extra)
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        # `private`: a shared cache must not hand one subscriber's feed to another URL.
        headers={"Cache-Control": "private, no-cache"},
    )

"""The calendar feed's own read-only token: it opens the feed, and only the feed opens with it."""

from __future__ import annotations

from typing import Any

import icalendar
from aiohttp.test_utils import TestClient, TestServer

from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings
from tests.test_web import ADMIN, NOW

Client = TestClient[Any, Any]


async def test_the_feed_opens_with_the_calendar_token_in_the_url(
    make_settings: MakeSettings,
) -> None:
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            resp = await client.get("/calendar.ics", params={"token": "calendar-token-for-tests"})
            assert resp.status == 200
            assert "private" in resp.headers["Cache-Control"]
            events = list(icalendar.Calendar.from_ical(await resp.read()).walk("VEVENT"))
            assert [str(e["SUMMARY"]) for e in events] == ["全民国家安全教育日"]


async def test_the_admin_token_is_refused_at_the_feed(make_settings: MakeSettings) -> None:
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            for resp in (
                await client.get("/calendar.ics", params={"token": "admin-token-for-tests"}),
                await client.get("/calendar.ics", headers=ADMIN),
            ):
                assert resp.status == 401
                body = await resp.json()
                assert body["error"] == "unauthorized"
                assert "admin token is not accepted" in body["detail"]


async def test_the_calendar_token_opens_nothing_else(make_settings: MakeSettings) -> None:
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            for path in ("/api/events", "/api/deliveries", "/api/config"):
                bearer = await client.get(
                    path, headers={"Authorization": "Bearer calendar-token-for-tests"}
                )
                query = await client.get(path, params={"token": "calendar-token-for-tests"})
                assert (bearer.status, query.status) == (401, 401), path
            assert (await client.get("/api/events", headers=ADMIN)).status == 200


async def test_without_a_calendar_token_the_feed_is_off_and_says_how_to_turn_it_on(
    make_settings: MakeSettings,
) -> None:
    async with App(make_settings(calendar_token=None), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            resp = await client.get("/calendar.ics", params={"token": "admin-token-for-tests"})
            assert resp.status == 503
            assert "NOTIFIER_CALENDAR_TOKEN" in (await resp.json())["detail"]

"""A send now wakes the worker of the rows it made: a chat group's message goes at once, not
at the chat worker's next poll (the console's and the API's send now woke the email worker
alone)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from notifier.config import DeliverySettings
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings
from tests.robots import Robot
from tests.test_chat_fairness import arrival, platforms, robots

__all__ = ["platforms", "robots"]

ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
# Far longer than the test may wait: a message that arrives came from the wake.
POLL_SECONDS = 60.0


async def test_the_apis_send_now_wakes_the_chat_worker_for_a_groups_message(
    robots: tuple[Robot, Robot], make_settings: MakeSettings
) -> None:
    _, group = robots
    settings = make_settings(delivery=DeliverySettings(poll_interval=POLL_SECONDS))
    stop = asyncio.Event()
    async with App(settings) as app:
        worker = asyncio.create_task(app.chat_worker.run(stop, drain_timeout=1))
        try:
            async with TestClient(TestServer(create_web_app(app))) as client:
                await asyncio.sleep(0.2)  # the worker found nothing due and waits for its poll
                resp = await client.post("/api/events/urgent/send", headers=ADMIN)
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["created"] == 1
                took = await arrival(group, within=5)
        finally:
            stop.set()
            await worker
    assert took < 2, f"the group's message waited {took:.1f} s for the chat worker's poll"

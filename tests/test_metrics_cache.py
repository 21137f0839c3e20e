"""/metrics counts the ledger at most once per interval, however often it is scraped."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings
from tests.test_web import HOOK_ENV, NOW, PAYLOAD, SECRET, post_hook

PENDING = re.compile(r'^notifier_deliveries\{channel="email",state="pending"\} (\S+)$', re.M)


async def test_scrapes_within_the_interval_reuse_one_count_then_it_is_taken_again(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOK_ENV, SECRET)
    async with App(make_settings(), clock=lambda: NOW) as app:
        app.metrics.counts_ttl = 0.3  # the default is 5 s; short here to see it expire
        async with TestClient(TestServer(create_web_app(app))) as client:

            async def pending() -> float:
                text = await (await client.get("/metrics")).text()
                match = PENDING.search(text)
                return float(match.group(1)) if match else 0.0

            await post_hook(client, PAYLOAD, "first")
            assert await pending() == 2.0
            await post_hook(client, PAYLOAD, "second")  # two more rows in the ledger
            scrapes = await asyncio.gather(*(pending() for _ in range(20)))
            assert set(scrapes) == {2.0}  # 20 scrapes, no new count: the ledger was not read
            await asyncio.sleep(0.35)
            assert await pending() == 4.0


def test_the_default_interval_is_a_few_seconds(make_settings: MakeSettings) -> None:
    app = App(make_settings())
    assert 1.0 <= app.metrics.counts_ttl <= 15.0
    assert app.metrics.counts_due(100.0)
    assert not app.metrics.counts_due(100.0 + app.metrics.counts_ttl / 2)
    assert app.metrics.counts_due(100.0 + app.metrics.counts_ttl)
    assert app.metrics.counts_due(50.0)  # a clock that went back does not freeze the counts

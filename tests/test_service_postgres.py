"""The whole service on PostgreSQL: the same promises as on SQLite."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from notifier.ledger.models import State
from notifier.planning import WATERMARK
from notifier.service import App
from tests.conftest import MakeSettings, smtp_settings
from tests.smtp_server import SmtpServer
from tests.test_service import at

pytestmark = pytest.mark.postgres


async def test_sends_catch_up_and_restarts_without_duplicates_on_postgresql(
    make_settings: MakeSettings, pg_url: str, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    settings = make_settings(database_url=pg_url, smtp=smtp_settings(server))
    clock = [at("2026-04-15T11:00")]
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.store.set_meta(WATERMARK, repr(at("2026-04-01T00:00")))
        await app.prepare()
        stats = await app.worker.run_until_idle()
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.prepare()
        again = await app.worker.run_until_idle()
        rows = await app.store.list_deliveries()
    assert (stats.sent, again.sent) == (2, 0)
    assert sorted(r.state.value for r in rows) == ["missed"] * 4 + ["sent"] * 2
    assert len(server.sink.messages) == 2 and server.sink.duplicates() == 0
    assert {r.state for r in rows if r.reminder_id == "on-start"} == {State.SENT}

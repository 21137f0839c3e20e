"""Issue 11 in one process: poison channels, bounded sends, renewed leases, readable logs.

The channels here are test stand-ins for an outside system that misbehaves (raises something
unexpected, never answers); everything of the package's own runs for real, on real SQLite.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from notifier.config import DeliverySettings, HttpSettings
from notifier.ledger.models import Delivery, State
from notifier.logs import RepeatFilter, TextFormatter
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings


class PoisonChannel:
    """Raises an exception that is not a TransportError on every send."""

    name = "email"
    description = "poison"
    send_timeout = 1.0

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, delivery: Delivery) -> None:
        self.calls += 1
        raise KeyError("the channel's own bug")

    async def close(self) -> None:
        return None


class SilentChannel:
    """Never answers, like a server that accepted the connection and went quiet."""

    name = "email"
    description = "silent"

    def __init__(self, send_timeout: float) -> None:
        self.send_timeout = send_timeout
        self.cut = 0

    async def send(self, delivery: Delivery) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cut += 1
            raise

    async def close(self) -> None:
        return None


class SlowChannel:
    """Takes far longer than the lease for each message, and says so (send_timeout)."""

    name = "email"
    description = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.send_timeout = seconds * 4
        self.sent: list[int] = []

    async def send(self, delivery: Delivery) -> None:
        await asyncio.sleep(self.seconds)
        self.sent.append(delivery.id)

    async def close(self) -> None:
        return None


@pytest.fixture
def captured_log() -> Any:
    """The root logger writing through a RepeatFilter into a buffer, as `notifier run` does."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(TextFormatter())
    flt = RepeatFilter()
    handler.addFilter(flt)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield buffer, flt
    root.removeHandler(handler)
    root.setLevel(old_level)


# --- the repeat filter ----------------------------------------------------------------------


def _record(msg: str, action: str, level: int = logging.WARNING) -> logging.LogRecord:
    record = logging.LogRecord("notifier.x", level, __file__, 1, msg, None, None)
    record.action = action
    return record


def test_a_repeated_warning_passes_once_then_is_counted_and_summarised() -> None:
    now = [1000.0]
    flt = RepeatFilter(window=60, clock=lambda: now[0])
    passed = [flt.filter(_record("database unavailable", "db_retry")) for _ in range(500)]
    assert passed.count(True) == 1 and flt.suppressed == 499
    # Another kind, and anything below WARNING, is not held back.
    assert flt.filter(_record("send failed", "send_pending"))
    assert all(flt.filter(_record("planned", "planned", logging.INFO)) for _ in range(3))
    now[0] += 61
    again = _record("database unavailable", "db_retry")
    assert flt.filter(again)
    assert again.repeated == 499  # type: ignore[attr-defined]
    assert "499 more like this in the last 60 s" in again.getMessage()


def test_flush_summarises_repeats_of_a_fault_that_ended() -> None:
    now = [0.0]
    flt = RepeatFilter(window=60, clock=lambda: now[0])
    for _ in range(10):
        flt.filter(_record("lease not renewed", "lease_wait"))
    assert flt.flush() == []  # the window is still open
    now[0] += 60
    (summary,) = flt.flush()
    assert summary.getMessage() == "lease not renewed (9 more like this in the last 60 s)"
    assert summary.action == "lease_wait"  # type: ignore[attr-defined]
    assert flt.flush() == []  # said once


def test_the_filter_remembers_a_bounded_number_of_kinds() -> None:
    flt = RepeatFilter(max_keys=8)
    for i in range(100):
        assert flt.filter(_record(f"varying text {i}", "x"))
    assert len(flt._seen) == 8


# --- sends ----------------------------------------------------------------------------------


async def test_a_channel_raising_an_unexpected_exception_ends_dead_with_the_error(
    make_settings: MakeSettings, captured_log: Any
) -> None:
    buffer, flt = captured_log
    channel = PoisonChannel()
    settings = make_settings(
        http=HttpSettings(enabled=False),
        delivery=DeliverySettings(
            base_delay=0.02, max_delay=0.05, max_attempts=5, poll_interval=0.05
        ),
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    async with App(settings, channel=channel) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        cpu, wall = time.process_time(), time.monotonic()
        task = asyncio.create_task(app.run(stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 5)
        for _ in range(100):
            if {r.state for r in await app.store.list_deliveries()} == {State.DEAD}:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # and it stays quiet afterwards: no loop
        calls_then = channel.calls
        await asyncio.sleep(0.5)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        stop.set()
        await asyncio.wait_for(task, 10)
        rows = await app.store.list_deliveries()
    log_bytes = len(buffer.getvalue().encode())
    print(
        f"\n[poison] rows={len(rows)} calls={channel.calls} cpu={cpu:.2f}s wall={wall:.2f}s "
        f"log_bytes={log_bytes} suppressed={flt.suppressed}"
    )
    assert {r.state for r in rows} == {State.DEAD}
    assert all(r.attempts == 5 for r in rows), [r.attempts for r in rows]
    assert all("KeyError" in (r.last_error or "") for r in rows), [r.last_error for r in rows]
    assert all((r.last_error or "").startswith("gave up:") for r in rows)
    assert channel.calls == len(rows) * 5 == calls_then  # five attempts each, then never again
    assert cpu < 0.5 * wall, f"{cpu:.2f}s CPU in {wall:.2f}s"
    assert log_bytes < 8_000, buffer.getvalue()[-2000:]


async def test_a_send_that_never_returns_is_cut_at_the_channels_timeout(
    make_settings: MakeSettings,
) -> None:
    channel = SilentChannel(send_timeout=0.3)
    settings = make_settings(delivery=DeliverySettings(base_delay=5, max_delay=5))
    async with App(settings, channel=channel) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        started = time.monotonic()
        stats = await asyncio.wait_for(app.worker.run_until_idle(), 10)
        took = time.monotonic() - started
        rows = await app.store.list_deliveries()
    assert stats.retried == len(rows) == channel.cut == 2
    assert {r.state for r in rows} == {State.PENDING}
    assert all("timeout" in (r.last_error or "") for r in rows)
    assert took < 1.5, f"two sends in parallel, each cut at 0.3 s, took {took:.2f}s"


async def test_a_live_worker_keeps_its_leases_through_a_send_longer_than_the_lease(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    channel = SlowChannel(seconds=1.6)  # each send outlasts the 0.9 s lease
    # Renewals come every 0.3 s (lease/3); a queued row's send waits for one only if the
    # heartbeat is more than lease/3 late, so 0.9 s leaves the loop 0.3 s of jitter (a 0.5 s
    # lease left 0.17 s, which a loaded CI machine once exceeded).
    settings = make_settings(
        smtp={"pool_size": 1},
        delivery=DeliverySettings(lease_seconds=0.9, poll_interval=0.1),
    )
    async with App(settings, channel=channel) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        burst = asyncio.create_task(app.worker.run_until_idle())
        await asyncio.sleep(0.95)  # mid-send: the first lease would have run out by now
        db = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
        try:
            leases = db.execute(
                "SELECT lease_until FROM deliveries WHERE state = 'sending'"
            ).fetchall()
        finally:
            db.close()
        # Another instance would claim nothing: every held row's lease is in the future.
        assert leases and all(lease > time.time() for (lease,) in leases), leases
        stats = await asyncio.wait_for(burst, 10)
        rows = await app.store.list_deliveries()
    assert stats.sent == 2 and stats.expired == 0
    assert all(r.attempts == 1 for r in rows)  # never claimed a second time
    assert sorted(channel.sent) == sorted(r.id for r in rows)


# --- the HTTP side while the database is away ---------------------------------------------


async def test_the_admin_api_and_readyz_answer_503_while_sqlite_is_locked_then_recover(
    make_settings: MakeSettings,
) -> None:
    url = make_settings().database_url + "?busy_timeout=100"
    settings = make_settings(database_url=url)
    stop = asyncio.Event()
    async with App(settings) as app:
        await app.outbox.send_now("security-day", now=app.clock())  # two rows, due now
        async with TestClient(TestServer(create_web_app(app))) as client:
            locker = sqlite3.connect(url.removeprefix("sqlite:///").split("?")[0])
            locker.isolation_level = None
            locker.execute("BEGIN EXCLUSIVE")
            try:
                worker = asyncio.create_task(app.worker.run(stop))
                response = await client.post(
                    "/api/events/security-day/send",
                    json={"again": True},
                    headers={"Authorization": "Bearer admin-token-for-tests"},
                )
                body = await response.json()
                assert response.status == 503, body
                assert body["error"] == "database unavailable"
                assert response.headers["Retry-After"].isdigit()
                for _ in range(50):  # the worker meets the lock and backs off
                    if app.worker.db_error:
                        break
                    await asyncio.sleep(0.05)
                # Reads pass (WAL) but writes do not: /readyz says so (the database's own
                # text only to the admin token, whose check needs the database: issue 17).
                ready = await client.get("/readyz")
                assert ready.status == 503
                assert (await ready.json())["components"] == {"database": "unavailable"}
                assert not worker.done()
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            for _ in range(100):  # resumes by itself
                if {r.state for r in await app.store.list_deliveries()} == {State.SENT}:
                    break
                await asyncio.sleep(0.05)
            assert (await client.get("/readyz")).status == 200
            stop.set()
            await asyncio.wait_for(worker, 10)
            rows = await app.store.list_deliveries()
    assert len(rows) == 2 and {r.state for r in rows} == {State.SENT}  # nothing half-written

"""One robot's backlog does not hold up another robot's rows (the chat worker is fair).

Two WeCom groups on the local stand-in (tests/robots.py), both paced: group A has a backlog
that takes seconds at its pace, group B one message due just after it. Paces are short here
(a quarter of a second) so that the tests take seconds, not the minutes of a real robot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.constants import PACED_HOLD
from notifier.ledger.models import State
from notifier.service import App
from tests.conftest import MakeSettings, write_schedule
from tests.robots import Platforms, Robot

PER_MINUTE = 240  # one send every 0.255 s (with the 2% margin)
GAP = 60.0 / PER_MINUTE * 1.02
BACKLOG = 20  # robot A's rows: about 5 s at its pace
PROMPT = 1.0  # robot B's message arrives within this long of being due

SCHEDULE = f"""\
audiences:
  group-a: {{chat: robot-a}}
  group-b: {{chat: robot-b}}
events:
  - id: backlog
    title: 全民国家安全教育日
    date: "4·15"
    audience: group-a
    reminders: [{{on: start}}]
  - id: urgent
    title: 国家宪法日
    date: "12-04"
    audience: group-b
    reminders: [{{on: start}}]
channels:
  robot-a:
    type: wecom
    url_env: NOTIFIER_TEST_URL_A
    per_minute: {PER_MINUTE}
    timeout: 2
  robot-b:
    type: wecom
    url_env: NOTIFIER_TEST_URL_B
    per_minute: {PER_MINUTE}
    timeout: 2
"""


@pytest.fixture
async def platforms() -> AsyncIterator[Platforms]:
    server = await Platforms().start()
    yield server
    await server.stop()


@pytest.fixture
def robots(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    config_dirs: tuple[Path, Path],
) -> tuple[Robot, Robot]:
    """Robots A and B. Each counts as throttled a send closer than 95% of the pace's gap to
    the one before it: the worker must keep every robot's pace."""
    write_schedule(config_dirs[0], SCHEDULE)  # in place of the conftest's schedule
    robots = []
    for name in ("a", "b"):
        key = f"key-{name}-0123456789abcdef"
        monkeypatch.setenv(
            f"NOTIFIER_TEST_URL_{name.upper()}",
            platforms.url(f"/cgi-bin/webhook/send?key={key}"),
        )
        robots.append(platforms.add(key, per_minute=1, window=GAP * 0.95))
    return robots[0], robots[1]


async def enqueue_backlog(app: App, count: int) -> None:
    """`count` rows for robot A, due now (keys made distinct, as bench/chat.py does)."""
    now = app.clock()
    _, rows = app.outbox.manual_rows("backlog", reminder_id=None, on=None, now=now, again=True)
    first = next(rows)
    batch = [dataclasses.replace(first, key=f"{first.key}/{i}") for i in range(count)]
    assert await app.store.enqueue(batch, now=now) == count


async def rows_of(app: App, channel: str) -> list[State]:
    return [r.state for r in await app.store.list_deliveries(limit=500) if r.channel == channel]


async def arrival(robot: Robot, *, within: float) -> float:
    """Seconds until the robot has received a message (fails after `within`)."""
    start = time.monotonic()
    while not robot.received:
        assert time.monotonic() - start < within, "the message did not arrive"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_a_robots_message_goes_out_promptly_while_another_robot_works_off_its_backlog(
    robots: tuple[Robot, Robot], make_settings: MakeSettings, db_url: str
) -> None:
    a, b = robots
    stop = asyncio.Event()
    async with App(make_settings(database_url=db_url)) as app:
        await enqueue_backlog(app, BACKLOG)
        await app.outbox.send_now("urgent", now=app.clock())  # due just after A's backlog
        worker = asyncio.create_task(app.chat_worker.run(stop, drain_timeout=1))
        took = await arrival(b, within=BACKLOG * GAP + 2)
        backlog = await rows_of(app, "robot-a")
        stop.set()
        await worker
    assert took < PROMPT, f"robot B's message took {took:.2f} s behind A's backlog"
    assert backlog.count(State.PENDING) >= BACKLOG // 2  # A is still pacing
    assert a.throttled == b.throttled == 0


async def test_a_paced_backlog_stays_in_the_ledger_not_in_the_workers_claim(
    robots: tuple[Robot, Robot], make_settings: MakeSettings
) -> None:
    a, _ = robots
    stop = asyncio.Event()
    async with App(make_settings()) as app:
        await enqueue_backlog(app, BACKLOG)
        worker = asyncio.create_task(app.chat_worker.run(stop, drain_timeout=1))
        held = []
        for _ in range(8):  # two seconds of pacing, looked at every quarter of a second
            await asyncio.sleep(0.25)
            held.append((await rows_of(app, "robot-a")).count(State.SENDING))
        stop.set()
        await worker
    # One row at a time (one more may be sent, its outcome in the commit) while the others
    # stay pending, claimable by another instance; before, all 20 were claimed at once.
    assert max(held) <= PACED_HOLD + 1, held
    assert 4 <= len(a.received) < BACKLOG and a.throttled == 0


async def test_a_burst_delivers_both_robots_backlogs_at_their_paces_and_then_returns(
    robots: tuple[Robot, Robot], make_settings: MakeSettings
) -> None:
    a, b = robots
    count = 6
    async with App(make_settings()) as app:
        await enqueue_backlog(app, count)
        await app.outbox.send_now("urgent", now=app.clock())
        start = time.monotonic()
        stats = await asyncio.wait_for(app.chat_worker.run_until_idle(), 10)
        took = time.monotonic() - start
        states = await rows_of(app, "robot-a") + await rows_of(app, "robot-b")
    assert stats.sent == count + 1 and states == [State.SENT] * (count + 1)
    assert len(a.received) == count and len(b.received) == 1
    assert a.throttled == b.throttled == 0
    # A's pace spaces its sends; the burst ends with the last of them, not a gap later.
    assert (count - 1) * GAP <= took < (count - 1) * GAP + 1.0


async def test_waiting_on_a_pace_costs_no_cpu_to_speak_of(
    robots: tuple[Robot, Robot], make_settings: MakeSettings
) -> None:
    a, _ = robots
    stop = asyncio.Event()
    async with App(make_settings()) as app:
        await enqueue_backlog(app, BACKLOG)
        worker = asyncio.create_task(app.chat_worker.run(stop, drain_timeout=1))
        await asyncio.sleep(0.2)
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(1.0)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        stop.set()
        await worker
    assert a.received and a.throttled == 0
    assert cpu < 0.3 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s: a busy loop"

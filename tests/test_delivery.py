"""Delivery against a real SMTP server: retries on 4xx, gives up on 5xx, loses nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from notifier.config import DeliverySettings
from notifier.ledger.models import State
from notifier.service import App
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import POLICY_REFUSAL, Faults, SmtpServer

StartSmtp = Callable[..., SmtpServer]


async def test_manual_send_reaches_the_smtp_server_once(
    make_settings: MakeSettings, smtp_server: StartSmtp
) -> None:
    server = smtp_server()
    async with App(make_settings(smtp=smtp_settings(server))) as app:
        created, size = await app.outbox.send_now("security-day", now=app.clock())
        assert (created, size) == (2, 2)
        stats = await app.worker.run_until_idle()
        again, _ = await app.outbox.send_now("security-day", now=app.clock())
        await app.worker.run_until_idle()
        rows = await app.store.list_deliveries()
    assert stats.sent == 2 and again == 0
    assert sorted(server.sink.recipients()) == [
        "办公室 <office@fao.example.com>",
        "法治处 <fazhi@fao.example.com>",
    ]
    assert {r.state for r in rows} == {State.SENT}
    msg = server.sink.messages[0]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "全民国家安全教育日" in str(msg["Subject"])


# A clock reading whose microsecond rounding goes up (…745.583395 > …745.5833945): taken from
# a run of the attachments test that sent nothing in its first burst.
ROUNDS_UP = 1796564745.5833945


async def test_a_send_now_is_due_at_the_same_clock_reading_that_made_it(
    make_settings: MakeSettings, smtp_server: StartSmtp
) -> None:
    server = smtp_server()
    assert datetime.fromtimestamp(ROUNDS_UP).timestamp() > ROUNDS_UP  # the case under test
    async with App(make_settings(smtp=smtp_settings(server)), clock=lambda: ROUNDS_UP) as app:
        await app.outbox.send_now("security-day", now=ROUNDS_UP)
        rows = await app.store.list_deliveries()
        stats = await app.worker.run_until_idle()
    assert rows and all(r.due_at <= ROUNDS_UP for r in rows)
    assert stats.sent == 2 and len(server.sink.messages) == 2


async def test_send_again_sends_a_second_copy_with_a_new_message_id(
    make_settings: MakeSettings, smtp_server: StartSmtp
) -> None:
    server = smtp_server()
    async with App(make_settings(smtp=smtp_settings(server))) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await app.outbox.send_now(
            "security-day", reminder_id="on-start", now=app.clock(), again=True
        )
        await app.worker.run_until_idle()
    assert len(server.sink.messages) == 4
    assert server.sink.duplicates() == 0


async def test_transient_451_is_retried_with_the_same_message_id(
    make_settings: MakeSettings, smtp_server: StartSmtp
) -> None:
    server = smtp_server(Faults(fail_first=3, code="451 4.3.0 greylisted"))
    clock = [datetime(2026, 4, 3, 9, 0).timestamp()]
    settings = make_settings(smtp=smtp_settings(server))
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.outbox.send_now("security-day", now=clock[0])
        first = await app.worker.run_until_idle()
        waiting = await app.store.list_deliveries(state=State.PENDING)
        assert first.retried >= 1 and waiting
        assert all(r.last_error and r.last_error.startswith("451") for r in waiting)
        for _ in range(5):  # move time past each backoff instead of sleeping
            clock[0] += settings.delivery.max_delay + 1
            await app.worker.run_until_idle()
        rows = await app.store.list_deliveries()
    assert {r.state for r in rows} == {State.SENT}
    assert server.sink.injected["451"] == 3
    assert len(server.sink.messages) == 2 and server.sink.duplicates() == 0


async def test_permanent_550_marks_failed_with_the_reply_and_the_rest_continue(
    make_settings: MakeSettings, smtp_server: StartSmtp
) -> None:
    server = smtp_server(Faults(reject={"fazhi@fao.example.com"}, reject_reply=POLICY_REFUSAL))
    async with App(make_settings(smtp=smtp_settings(server))) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        stats = await app.worker.run_until_idle()
        failed = await app.store.list_deliveries(state=State.FAILED)
        sent = await app.store.list_deliveries(state=State.SENT)
    assert (stats.failed, stats.sent) == (1, 1)
    assert failed[0].recipient == "fazhi@fao.example.com"
    assert failed[0].last_error is not None and failed[0].last_error.startswith("550")
    assert sent[0].recipient == "office@fao.example.com"


async def test_rows_wait_while_the_smtp_server_is_down_and_go_when_it_is_back(
    make_settings: MakeSettings, smtp_server: StartSmtp
) -> None:
    server = smtp_server()
    port = server.port
    server.stop()
    clock = [datetime(2026, 4, 3, 9, 0).timestamp()]
    settings = make_settings(smtp=smtp_settings(server))
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.outbox.send_now("security-day", now=clock[0])
        down = await app.worker.run_until_idle()
        assert down.sent == 0 and down.retried == 2
        assert len(await app.store.list_deliveries(state=State.PENDING)) == 2
        revived = smtp_server(port=port)
        clock[0] += settings.delivery.max_delay + 1
        up = await app.worker.run_until_idle()
    assert up.sent == 2
    assert len(revived.sink.messages) == 2


async def test_retries_stop_after_max_attempts_as_dead_and_retry_puts_them_back(
    make_settings: MakeSettings, smtp_server: StartSmtp
) -> None:
    from notifier.config import DeliverySettings

    server = smtp_server(Faults(rate=1.0, code="451 4.3.0 busy"))
    clock = [datetime(2026, 4, 3, 9, 0).timestamp()]
    settings = make_settings(
        smtp=smtp_settings(server),
        delivery=DeliverySettings(base_delay=0.05, max_delay=0.2, max_attempts=3),
    )
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.outbox.send_now("security-day", now=clock[0])
        for _ in range(4):
            await app.worker.run_until_idle()
            clock[0] += 1
        dead = await app.store.list_deliveries(state=State.DEAD)
        assert len(dead) == 2 and all(d.attempts == 3 for d in dead)
        server.sink.faults.rate = 0.0
        assert await app.store.requeue([State.DEAD], now=clock[0]) == 2
        await app.worker.run_until_idle()
        assert len(await app.store.list_deliveries(state=State.SENT)) == 2


async def test_the_mail_drop_writes_one_file_per_message(make_settings: MakeSettings) -> None:
    settings = make_settings()
    async with App(settings) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        await app.worker.run_until_idle()
    files = sorted((settings.mail_drop_dir / "new").iterdir())
    assert len(files) == 2
    assert b"Message-ID: <" in files[0].read_bytes()
    assert not list((settings.mail_drop_dir / "tmp").iterdir())


def test_backoff_grows_exponentially_and_is_capped() -> None:
    from notifier.delivery.weather import backoff

    top = [backoff(n, base=5, cap=600, rand=lambda: 1.0) for n in range(1, 10)]
    assert top[:4] == [5, 10, 20, 40]
    assert max(top) == 600
    assert backoff(3, base=5, cap=600, rand=lambda: 0.5) == 10
    assert timedelta(seconds=top[-1]) <= timedelta(minutes=10)


async def test_a_down_smtp_server_does_not_spin_the_cpu(
    make_settings: MakeSettings, smtp_server: StartSmtp
) -> None:
    import asyncio
    import time

    from notifier.config import DeliverySettings, HttpSettings

    server = smtp_server()
    server.stop()  # nothing listens on its port now
    settings = make_settings(
        smtp=smtp_settings(server),
        http=HttpSettings(enabled=False),
        delivery=DeliverySettings(base_delay=0.5, max_delay=2.0, poll_interval=0.5),
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    async with App(settings) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        task = asyncio.create_task(app.run(stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 5)
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(0.9)  # watch the loop while every send fails
        await asyncio.sleep(0.9)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        stop.set()
        await asyncio.wait_for(task, 10)
        rows = await app.store.list_deliveries()
    assert {r.state for r in rows} == {State.PENDING}  # waiting, not lost
    assert all(r.attempts <= 6 for r in rows), [r.attempts for r in rows]
    assert cpu < 0.5 * wall, f"{cpu:.2f}s CPU in {wall:.2f}s"


async def test_connections_are_reused_from_a_small_pool(
    make_settings: MakeSettings, smtp_server: StartSmtp, tmp_path: Path
) -> None:
    server = smtp_server()
    settings = make_settings(smtp=smtp_settings(server, pool_size=2))
    rows = "\n".join(f"u{i}@example.com,用户{i}" for i in range(40))
    (settings.schedules_dir / "many.csv").write_text(f"email,name\n{rows}\n", "utf-8")
    write_schedule(
        settings.schedules_dir,
        """\
        audiences:
          many: {csv: many.csv}
        events:
          - {id: bulk, title: 批量, date: "06-01", audience: many, reminders: [{on: start}]}
        """,
        name="many.yaml",
    )
    async with App(settings) as app:
        await app.outbox.send_now("bulk", now=app.clock())
        stats = await app.worker.run_until_idle()
    assert stats.sent == 40
    assert len(server.sink.messages) == 40
    assert len(server.sink.sessions) <= 2


SCHEDULE_TEMPLATE = """\
audiences:
  staff:
{members}
events:
  - id: security-day
    title: 全民国家安全教育日
    date: "4·15"
    reminders:
      - on: start
"""


async def test_while_outcomes_cannot_be_recorded_each_connection_finishes_one_message_at_most(
    make_settings: MakeSettings,
    smtp_server: StartSmtp,
    config_dirs: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """The promise behind "a kill duplicates at most one message per connection": a 250 whose
    outcome is not committed stops its connection's next message short of its final dot."""
    schedules, _ = config_dirs
    members = "\n".join(f"    - {{email: r{n}@fao.example.com, name: 处室{n}}}" for n in range(12))
    write_schedule(schedules, SCHEDULE_TEMPLATE.format(members=members))
    db = tmp_path / "ledger.db"
    server = smtp_server()
    locked = threading.Event()
    holder: list[sqlite3.Connection] = []
    accept = server.sink.handle_DATA

    async def lock_after_first(server_: Any, session: Any, envelope: Any) -> str:
        reply = await accept(server_, session, envelope)
        if not holder:  # the ledger's write lock, taken before the first 250 goes back
            conn = sqlite3.connect(db, timeout=5, check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")
            holder.append(conn)
            locked.set()
        return reply

    server.sink.handle_DATA = lock_after_first  # type: ignore[method-assign]
    settings = make_settings(
        smtp=smtp_settings(server, pool_size=2), database_url=f"sqlite:///{db}?busy_timeout=50"
    )
    try:
        async with App(settings) as app:
            created, _ = await app.outbox.send_now("security-day", now=app.clock())
            assert created == 12
            burst = asyncio.create_task(app.worker.run_until_idle())
            assert await asyncio.to_thread(locked.wait, 5)
            await asyncio.sleep(1.0)  # the lanes' next messages are transferred and held
            while_locked = len(server.sink.messages)
            # pool_size connections, one unrecorded 250 each at most
            assert 1 <= while_locked <= 2, f"{while_locked} messages went out unrecorded"
            holder[0].rollback()
            stats = await asyncio.wait_for(burst, 30)
            rows = await app.store.list_deliveries()
    finally:
        for conn in holder:
            conn.close()
    assert stats.sent == 12 and {r.state for r in rows} == {State.SENT}
    assert len(server.sink.messages) == 12 and server.sink.duplicates() == 0


async def test_a_running_worker_sends_rows_another_process_enqueued_without_waiting_its_poll(
    make_settings: MakeSettings, smtp_server: StartSmtp, tmp_path: Path
) -> None:
    """`notifier send` beside `notifier run` on SQLite: the service's idle worker sees the
    other process's commit (`PRAGMA data_version`) within a tenth of a second, not after its
    poll interval (30 s here)."""
    server = smtp_server()
    settings = make_settings(
        smtp=smtp_settings(server),
        delivery=DeliverySettings(poll_interval=30.0),
        database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
    )
    async with App(settings) as service:
        stop = asyncio.Event()
        running = asyncio.create_task(service.worker.run(stop))
        await asyncio.sleep(0.3)  # idle now, its next poll 30 s away
        try:
            # Another process's App on the same file: its own SQLite connection.
            async with App(settings) as other:
                created, _ = await other.outbox.send_now("security-day", now=other.clock())
            assert created == 2
            sent_within = await wait_until_sent(service, 2, within=3.0)
        finally:
            stop.set()
            await running
    assert sent_within < 1.0, f"took {sent_within:.2f} s"
    assert len(server.sink.messages) == 2


async def wait_until_sent(app: App, count: int, *, within: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within:
        rows = await app.store.list_deliveries(state=State.SENT)
        if len(rows) >= count:
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} rows sent within {within} s")

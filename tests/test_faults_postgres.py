"""Issue 11 on PostgreSQL with real processes: a server restart mid-send, a lost instance.

The restart test restarts the PostgreSQL server the whole suite shares (other tests running at
that moment may see "terminating connection due to administrator command"), once, for a few
seconds, and starts it again in a `finally` whatever happened. While developing, point it at a
private cluster instead: FAULTS_PG_CLUSTER=faults FAULTS_PG_PORT=5433.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.config import SmtpSettings
from notifier.constants import DEFAULT_LEASE_SECONDS
from tests.procs import (
    Procs,
    enqueue_now,
    free_port,
    read_ledger,
    settled,
    tally,
    timed,
    wait_until,
    write_config,
)
from tests.test_faults import HookLoop, hook_rows_pg, http_get, log_actions, service_env

pytestmark = [pytest.mark.postgres, pytest.mark.crash]

CLUSTER = os.environ.get("FAULTS_PG_CLUSTER", "main")
PORT = int(os.environ.get("FAULTS_PG_PORT", "5432"))
ADMIN_URL = f"postgresql://postgres@127.0.0.1:{PORT}/postgres"
POOL = SmtpSettings().pool_size


def pg_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        pytest.skip("!!! no /etc/postgresql: the PostgreSQL fault tests did NOT run !!!")
    return versions[-1]


def pg_ctl(action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", pg_version(), CLUSTER, action],
        capture_output=True,
        text=True,
        timeout=60,
    )


def pg_answers() -> bool:
    import psycopg

    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=1) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database on the server under test, dropped afterwards."""
    import psycopg

    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.fail(f"!!! PostgreSQL on {PORT} UNREACHABLE, the fault test FAILS: {exc} !!!")
    name = f"notifier_faults_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:{PORT}/{name}"
    finally:
        wait_until(pg_answers, within=30, what="PostgreSQL to answer before the cleanup")
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_postgresql_restart_mid_send_loses_nothing_and_the_service_stays_ready(
    tmp_path: Path, pg_database: str
) -> None:
    total = 2000
    cfg = write_config(tmp_path, audience=total, hooks=True)
    port = free_port()
    with Procs(tmp_path) as procs, timed() as elapsed:
        sink = procs.sink("--latency", "0.02")  # 8 connections: about 400 messages a second
        env = service_env(
            cfg,
            database_url=pg_database,
            smtp_port=sink.port,
            http_port=port,
            NOTIFIER_DELIVERY__LEASE_SECONDS="6",
        )
        assert asyncio.run(enqueue_now(env, cfg.event_id)) == total
        service = procs.notifier(env, cwd=tmp_path)
        wait_until(lambda: sink.count() >= 300, within=30, what="mail to flow")
        hooks = HookLoop(port, count=60, per_second=10, prefix="restart")
        hooks.start()
        time.sleep(0.5)
        at_restart = sink.count()
        restart_at = elapsed()
        try:
            result = pg_ctl("restart")
            # pg_ctlcluster's own readiness probe (psql until three answers agree) can give
            # up and exit 1 while the new server logs that it is ready: that is a restart.
            restarted = "ready to accept connections" in result.stdout + result.stderr
            assert result.returncode == 0 or restarted, result
            wait_until(pg_answers, within=30, interval=0.05, what="PostgreSQL back")
        finally:
            if not pg_answers():
                pg_ctl("start")
        outage = elapsed() - restart_at
        hooks.join(timeout=90)
        assert not hooks.is_alive(), "webhook sender stuck"
        expected = total + 2 * len(hooks.accepted)
        wait_until(
            lambda: settled(pg_database, expected), within=60, interval=0.2, what="all sends"
        )
        wait_until(lambda: tally(sink.arrivals())[0] >= expected, within=10, what="arrivals")
        finished = elapsed() - restart_at
        ready = http_get(port, "/readyz")
        alive = service.alive()
        code = service.terminate(within=15)
        arrivals = sink.arrivals()
        ledger = read_ledger(pg_database)
        rows = hook_rows_pg(pg_database)
    distinct, duplicates = tally(arrivals)
    statuses = {s: hooks.statuses.count(s) for s in set(hooks.statuses)}
    log_bytes = service.log.stat().st_size
    actions = log_actions(service.log)
    print(
        f"\n[pg-restart] outage={outage:.1f}s (restart at {at_restart} of {total} arrivals) "
        f"messages={expected} (reminder {total} + {len(hooks.accepted)} webhooks x 2) "
        f"distinct={distinct} duplicates={duplicates} webhooks={statuses} "
        f"done_after_restart={finished:.1f}s db_retries_logged={actions.count('db_retry')} "
        f"log_bytes={log_bytes} ledger={dict(ledger.states)}"
    )
    assert alive and code == 0
    assert ready[0] == 200, ready
    assert set(hooks.statuses) <= {202, 503}, statuses
    assert not hooks.errors and len(hooks.accepted) == 60, hooks.errors[:3]
    assert set(rows.values()) == {2} and len(rows) == 60  # every accepted webhook whole
    assert distinct == expected, f"{expected - distinct} lost"
    assert ledger.states == {"sent": expected}
    assert duplicates <= POOL
    assert log_bytes < 50_000


def test_a_sigkilled_instances_rows_are_taken_over_within_30_s(
    tmp_path: Path, pg_database: str
) -> None:
    total = 2000
    cfg = write_config(tmp_path, audience=total)
    with Procs(tmp_path) as procs, timed() as elapsed:
        sink = procs.sink("--latency", "0.02")
        env = service_env(cfg, database_url=pg_database, smtp_port=sink.port)
        env.pop("NOTIFIER_DELIVERY__LEASE_SECONDS")  # the default lease, as shipped
        assert asyncio.run(enqueue_now(env, cfg.event_id)) == total
        services = []
        for i in range(2):
            workdir = tmp_path / f"instance{i}"
            workdir.mkdir()
            services.append(procs.notifier(env, cwd=workdir, name=f"instance{i}"))
        wait_until(lambda: sink.count() >= 400, within=30, what="mail to flow")
        held = read_ledger(pg_database).states.get("sending", 0)
        services[0].kill()
        killed_at = time.time()
        killed_elapsed = elapsed()
        wait_until(lambda: settled(pg_database, total), within=60, interval=0.2, what="all sends")
        wait_until(lambda: tally(sink.arrivals())[0] >= total, within=10, what="arrivals")
        code = services[1].terminate(within=15)
        arrivals = sink.arrivals()
        ledger = read_ledger(pg_database)
    distinct, duplicates = tally(arrivals)
    last = max(t for t, _, _ in arrivals) - killed_at
    print(
        f"\n[takeover] lease={DEFAULT_LEASE_SECONDS:g}s killed at {killed_elapsed:.1f}s "
        f"holding~{held} rows; last message {last:.1f}s after the kill; messages={total} "
        f"distinct={distinct} duplicates={duplicates} ledger={dict(ledger.states)}"
    )
    assert code == 0
    assert distinct == total and ledger.states == {"sent": total}
    assert last < 30, f"the last message arrived {last:.1f}s after the kill"
    assert duplicates <= POOL

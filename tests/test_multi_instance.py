"""Three `notifier run` processes on one PostgreSQL database, one of them killed halfway.

Issue 5: every instance runs the timer and the worker; the database's unique keys make
enqueueing idempotent and `FOR UPDATE SKIP LOCKED` plus a lease shares the sending. So, with
a reminder to 3,000 recipients and 300 signed webhooks spread over the three instances, every
message arrives once per key, a kill costs at most one duplicate, and nothing stays `sending`.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.procs import (
    HOOK_AUDIENCE,
    HOOK_ID,
    HOOK_SECRET,
    PG_ADMIN_URL,
    TZ,
    Procs,
    free_port,
    ledger_message_ids,
    notifier_env,
    read_ledger,
    settled,
    tally,
    timed,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.postgres, pytest.mark.crash]

INSTANCES = 3
AUDIENCE = 3000
WEBHOOKS = 300
# One SMTP connection per instance, so that issue 5's "at most one duplicate per kill" is the
# bound the package can keep: a SIGKILL can cut every open SMTP transaction between the
# server's 250 and the commit of the outcome, i.e. up to pool_size duplicates per kill (see
# test_crash.py). With the default pool of 8 this test saw 0, 8, 5 and 6 duplicates for its one
# kill in four runs. The sink's 3 ms per message keeps 3,600 messages flowing for ~6 s.
POOL_SIZE = "1"
SINK_LATENCY = "0.003"
HAS_WEB = importlib.util.find_spec("notifier.web") is not None
WEB_MISSING = (
    "!!! WEBHOOK PART NOT RUN: notifier/web.py does not exist yet, so the 300 signed webhooks "
    "over three instances were not tested (the 3,000-recipient reminder with a SIGKILL was). "
    "Re-run once notifier/web.py lands. !!!"
)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"!!! PostgreSQL at 127.0.0.1:5432 is UNREACHABLE, the 3-instance test FAILS: "
            f"{exc}. Start it with scripts/test-deps (`make test` runs it). !!!",
            pytrace=False,
        )
    name = f"notifier_multi_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class HookSender(threading.Thread):
    """POST the signed webhooks round-robin over the instances, like a load balancer: a
    request that cannot reach its instance (killed) goes to the next one, same webhook-id."""

    def __init__(self, ports: list[int], count: int, per_second: float) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.count = count
        self.per_second = per_second
        self.statuses: Counter[int] = Counter()
        self.failovers = 0
        self.rejected: Counter[int] = Counter()  # status (0: no connection) -> count
        self.errors: list[str] = []

    def post(self, port: int, hook_id: str, webhook_id: str, body: bytes) -> int:
        from standardwebhooks.webhooks import Webhook

        now = datetime.now(UTC)
        signature = Webhook(HOOK_SECRET).sign(webhook_id, now, body.decode())
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/hooks/{hook_id}",
            data=body,
            method="POST",
            headers={
                "content-type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def run(self) -> None:
        start = time.monotonic()
        for i in range(self.count):
            time.sleep(max(0.0, start + i / self.per_second - time.monotonic()))
            body = json.dumps(
                {"visitor": f"访客{i}", "org": "某某大学", "date": "2026-05-20"},
                ensure_ascii=False,
            ).encode()
            webhook_id = f"msg_{i:04d}"
            # Like a Standard Webhooks sender: retry (same webhook-id) until some instance
            # takes it, for up to 20 s; the first try goes round-robin.
            deadline = time.monotonic() + 20
            attempt = 0
            while True:
                port = self.ports[(i + attempt) % len(self.ports)]
                attempt += 1
                try:
                    status = self.post(port, HOOK_ID, webhook_id, body)
                except OSError:
                    status = 0
                if status in (200, 202):
                    self.statuses[status] += 1
                    break
                self.failovers += 1
                self.rejected[status] += 1
                if time.monotonic() > deadline:
                    self.errors.append(f"{webhook_id}: no instance accepted it ({status})")
                    break
                time.sleep(0.05)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_three_instances_one_killed_send_every_message_once_per_key(
    tmp_path: Path, pg_database: str
) -> None:
    hooks_expected = WEBHOOKS * len(HOOK_AUDIENCE) if HAS_WEB else 0
    total = AUDIENCE + hooks_expected
    send_at = datetime.now(TZ) + timedelta(seconds=3)  # processes start in about 1 s
    cfg = write_config(tmp_path, audience=AUDIENCE, send_at=send_at, hooks=True)
    ports = [free_port() for _ in range(INSTANCES)]
    with Procs(tmp_path) as procs, timed() as elapsed:
        sink = procs.sink("--latency", SINK_LATENCY)
        services = []
        for i, port in enumerate(ports):
            env = notifier_env(
                cfg,
                database_url=pg_database,
                smtp_port=sink.port,
                http_port=port if HAS_WEB else None,
                NOTIFIER_SMTP__POOL_SIZE=POOL_SIZE,
            )
            workdir = tmp_path / f"instance{i}"
            workdir.mkdir()
            services.append(procs.notifier(env, cwd=workdir, name=f"instance{i}"))
        for s in services:
            wait_until(
                lambda s=s: '"action": "started"' in s.log.read_text() or not s.alive(),
                within=30,
                what=f"{s.name} to start",
            )
            assert s.alive(), s.describe()
        if HAS_WEB:
            for port in ports:
                wait_until(lambda p=port: healthy(p), within=30, what=f"/healthz on {port}")
        # 30/s: the 300 webhooks span the kill, so some go to the dead instance and fail over.
        sender = HookSender(ports, WEBHOOKS, per_second=30)
        if HAS_WEB:
            sender.start()

        wait_until(
            lambda: (
                sink.count() >= total // 2
                and (not HAS_WEB or sum(sender.statuses.values()) >= WEBHOOKS // 2)
            ),
            within=40,
            what="half of the mail and half of the webhooks",
        )
        at_kill = sink.count()
        services[0].kill()
        killed_at = elapsed()

        if HAS_WEB:
            sender.join(timeout=30)
            assert not sender.is_alive(), "webhook sender stuck"
        # The killed instance's leases (3 s) run out and the two others take its rows.
        wait_until(lambda: settled(pg_database, total), within=60, interval=0.2, what="all sends")
        wait_until(lambda: tally(sink.arrivals())[0] >= total, within=10, what="all arrivals")
        codes = [s.terminate(within=15) for s in services[1:]]
        arrivals = sink.arrivals()
        ledger = read_ledger(pg_database)
        sent_ids = ledger_message_ids(pg_database, "sent")
        took = elapsed()

    distinct, duplicates = tally(arrivals)
    per_rcpt = Counter(r for _, _, r in arrivals)
    summary = (
        f"instances={INSTANCES} pool={POOL_SIZE} kills=1 (at {at_kill} arrivals, {killed_at:.1f}s) "
        f"messages_expected={total} (reminder {AUDIENCE} + hooks {hooks_expected}) "
        f"arrivals={len(arrivals)} distinct={distinct} duplicates={duplicates} "
        f"retries={ledger.retries} ledger={dict(ledger.states)} exit_codes={codes} "
        f"webhooks={dict(sender.statuses) if HAS_WEB else 'not run'} "
        f"failovers={sender.failovers} {dict(sender.rejected)} took={took:.1f}s"
    )
    print(f"\n[multi-instance] {summary}")
    assert codes == [0] * (INSTANCES - 1), summary
    assert not sender.errors, f"{summary} {sender.errors[:5]}"
    if HAS_WEB:
        assert set(sender.statuses) <= {200, 202}, summary
    assert distinct == total, summary
    assert ledger.states == {"sent": total}, summary  # nothing left `sending`
    assert {m for _, m, _ in arrivals} == sent_ids, summary
    assert all(per_rcpt[e] >= WEBHOOKS for e in HOOK_AUDIENCE) or not HAS_WEB, summary
    assert duplicates <= 1, summary
    if not HAS_WEB:
        pytest.skip(f"{WEB_MISSING} Reminder part passed: {summary}")

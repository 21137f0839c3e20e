"""Issue 11 with real processes on SQLite: what operators meet on ordinary days.

- a slow office mail server (`NOTIFIER_SMTP__TIMEOUT=300`) with every other setting default;
- an SMTP server that accepts a message and never answers it;
- the database locked by another process past the busy timeout, and a full disk, during an
  enqueue and during delivery.

Each prints its figures (`-s`): seconds, messages, duplicates, log bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.procs import (
    HOOK_ID,
    HOOK_SECRET,
    Config,
    Procs,
    enqueue_now,
    free_port,
    notifier_command,
    notifier_env,
    read_ledger,
    sent_count,
    settled,
    tally,
    timed,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.crash

# The NOTIFIER_DELIVERY__* values tests/procs.py sets for speed; "default settings" drops them.
DELIVERY_OVERRIDES = [
    "NOTIFIER_DELIVERY__LEASE_SECONDS",
    "NOTIFIER_DELIVERY__POLL_INTERVAL",
    "NOTIFIER_DELIVERY__BASE_DELAY",
    "NOTIFIER_DELIVERY__MAX_DELAY",
    "NOTIFIER_DELIVERY__MAX_ATTEMPTS",
]


def log_actions(path: Path) -> list[str]:
    actions = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            actions.append(str(json.loads(line).get("action")))
    return actions


# The admin token of the services here: /readyz gives its errors' text only with it.
ADMIN_TOKEN = "faults-admin-token-0123456789"


def service_env(config: Config, **settings: Any) -> dict[str, str]:
    """`notifier_env` with the admin token set (`http_get` sends it)."""
    return notifier_env(config, NOTIFIER_ADMIN_TOKEN=ADMIN_TOKEN, **settings)


def http_get(port: int, path: str) -> tuple[int, dict[str, object], dict[str, str]]:
    """GET as the admin (services started with `service_env`)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def post_hook(port: int, webhook_id: str, visitor: str) -> tuple[int, dict[str, str]]:
    """One signed webhook (Standard Webhooks); (status, headers), 0 for no connection."""
    from standardwebhooks.webhooks import Webhook

    body = json.dumps({"visitor": visitor, "date": "2026-05-20"}, ensure_ascii=False)
    now = datetime.now(UTC)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/{HOOK_ID}",
        data=body.encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(HOOK_SECRET).sign(webhook_id, now, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return int(response.status), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers)
    except OSError:
        return 0, {}


HOOK_KEYS_SQL = "SELECT key FROM deliveries WHERE key LIKE 'hook:%'"


def hook_rows(database_url: str) -> dict[str, int]:
    """Rows per webhook-id in the ledger (SQLite)."""
    path = database_url.removeprefix("sqlite:///").split("?")[0]
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as c:
        return _per_webhook([k for (k,) in c.execute(HOOK_KEYS_SQL)])


def hook_rows_pg(database_url: str) -> dict[str, int]:
    """Rows per webhook-id in the ledger (PostgreSQL)."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as c:
        return _per_webhook([str(k) for (k,) in c.execute(HOOK_KEYS_SQL)])


def _per_webhook(keys: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        webhook_id = key.split("/", 1)[1].rsplit("/", 1)[0]
        counts[webhook_id] = counts.get(webhook_id, 0) + 1
    return counts


def test_a_300_s_smtp_timeout_with_default_settings_sends_mail(tmp_path: Path) -> None:
    total = 50
    cfg = write_config(tmp_path, audience=total)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Procs(tmp_path) as procs, timed() as elapsed:
        sink = procs.sink()
        env = service_env(cfg, database_url=db, smtp_port=sink.port)
        for name in DELIVERY_OVERRIDES:
            env.pop(name)
        env["NOTIFIER_SMTP__TIMEOUT"] = "300"
        assert asyncio.run(enqueue_now(env, cfg.event_id)) == total
        service = procs.notifier(env, cwd=tmp_path)
        wait_until(lambda: settled(db, total), within=30, interval=0.2, what="all 50 sent")
        took = elapsed()
        assert service.terminate(within=15) == 0
        distinct, duplicates = tally(sink.arrivals())
    log_bytes = service.log.stat().st_size
    print(f"\n[timeout-300] messages={total} took={took:.1f}s log_bytes={log_bytes}")
    assert distinct == total and duplicates == 0
    assert read_ledger(db).states == {"sent": total}
    assert log_bytes < 20_000


def test_a_stalled_smtp_server_is_cut_at_its_timeout_and_no_live_lease_expires(
    tmp_path: Path,
) -> None:
    total, stalls, timeout = 20, 2, 2.0
    cfg = write_config(tmp_path, audience=total)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Procs(tmp_path) as procs, timed() as elapsed:
        sink = procs.sink("--stall-first", str(stalls))
        env = service_env(
            cfg,
            database_url=db,
            smtp_port=sink.port,
            NOTIFIER_SMTP__POOL_SIZE="2",
            NOTIFIER_SMTP__TIMEOUT=str(timeout),
            # Shorter than one stalled send: only renewals keep the holder's claim.
            NOTIFIER_DELIVERY__LEASE_SECONDS="0.6",
        )
        assert asyncio.run(enqueue_now(env, cfg.event_id)) == total
        service = procs.notifier(env, cwd=tmp_path)
        wait_until(lambda: settled(db, total), within=30, interval=0.1, what="all sends")
        took = elapsed()
        assert service.terminate(within=15) == 0
        arrivals = sink.arrivals()
        injected = sink.injected()
    ledger = read_ledger(db)
    distinct, duplicates = tally(arrivals)
    path = db.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as c:
        cut = c.execute("SELECT COUNT(*) FROM deliveries WHERE last_error LIKE '%timeout%'")
        (timed_out,) = cut.fetchone()
    actions = log_actions(service.log)
    print(
        f"\n[stalled-smtp] messages={total} stalls={injected['stall']} timed_out={timed_out} "
        f"attempts={ledger.attempts} duplicates={duplicates} took={took:.1f}s "
        f"lease_lost={actions.count('lease_lost')} lease_wait={actions.count('lease_wait')}"
    )
    assert injected["stall"] == stalls
    assert distinct == total and duplicates == 0 and ledger.states == {"sent": total}
    assert timed_out == stalls  # each stalled send was cut, recorded with its reason, retried
    # Each stall cost exactly one more attempt: no lease ran out under a live holder (a
    # reclaim would count another attempt, and so would a hand-back loop).
    assert ledger.attempts == total + stalls, ledger
    assert "lease_lost" not in actions and "lease_wait" not in actions
    assert took >= timeout  # the stalled ones waited for their timeout, not less


# --- SQLite locked by another process, and a full disk --------------------------------------


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold SQLite's write lock from another connection (this test's process)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        conn.close()


class HookLoop(threading.Thread):
    """Signed webhooks at a steady rate; each retried (same webhook-id) until a 202."""

    def __init__(self, port: int, count: int, per_second: float, prefix: str) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.per_second, self.prefix = port, count, per_second, prefix
        self.statuses: list[int] = []
        self.retry_after: set[str] = set()
        self.accepted: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        start = time.monotonic()
        for i in range(self.count):
            time.sleep(max(0.0, start + i / self.per_second - time.monotonic()))
            webhook_id = f"{self.prefix}_{i:04d}"
            deadline = time.monotonic() + 60
            while True:
                status, headers = post_hook(self.port, webhook_id, f"访客{i}")
                self.statuses.append(status)
                if status == 202:
                    self.accepted.append(webhook_id)
                    break
                if status == 503:
                    self.retry_after.add(headers.get("Retry-After", "-"))
                if time.monotonic() > deadline:
                    self.errors.append(f"{webhook_id}: never accepted (last {status})")
                    break
                time.sleep(0.2)


def test_sqlite_locked_past_the_busy_timeout_refuses_clearly_and_resumes(
    tmp_path: Path,
) -> None:
    total, lock_seconds = 300, 3.0
    cfg = write_config(tmp_path, audience=total, hooks=True)
    path = str(tmp_path / "ledger.db")
    db = f"sqlite:///{path}?busy_timeout=300"
    port = free_port()
    with Procs(tmp_path) as procs, timed() as elapsed:
        sink = procs.sink("--latency", "0.01")
        env = service_env(
            cfg, database_url=db, smtp_port=sink.port, http_port=port, NOTIFIER_SMTP__POOL_SIZE="2"
        )
        assert asyncio.run(enqueue_now(env, cfg.event_id)) == total
        service = procs.notifier(env, cwd=tmp_path)
        wait_until(lambda: sink.count() >= 30, within=20, what="mail to flow")
        hooks = HookLoop(port, count=20, per_second=5, prefix="locked")
        hooks.start()
        with locked(path):
            locked_at = elapsed()
            at_lock = sink.count()
            # An enqueue from the command line: a clear error, exit 1, nothing written.
            cli = subprocess.run(
                [*notifier_command(), "send", cfg.event_id, "--again"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                timeout=60,
                text=True,
            )
            ready = wait_until(
                lambda: (r := http_get(port, "/readyz"))[0] == 503 and r,
                within=5,
                what="/readyz to report the lock",
            )
            time.sleep(max(0.0, locked_at + lock_seconds - elapsed()))
            during = sink.count() - at_lock
            alive_in_lock = service.alive()
        unlocked_at = elapsed()
        hooks.join(timeout=60)
        expected = total + 2 * len(hooks.accepted)
        wait_until(lambda: settled(db, expected), within=30, interval=0.2, what="all sends")
        recovered = elapsed() - unlocked_at
        assert http_get(port, "/readyz")[0] == 200
        assert service.terminate(within=15) == 0
        distinct, duplicates = tally(sink.arrivals())
    log_bytes = service.log.stat().st_size
    statuses = {s: hooks.statuses.count(s) for s in set(hooks.statuses)}
    print(
        f"\n[sqlite-locked] lock={unlocked_at - locked_at:.1f}s messages={expected} "
        f"sent_during_lock={during} webhooks={statuses} retry_after={hooks.retry_after} "
        f"resumed_in={recovered:.1f}s duplicates={duplicates} log_bytes={log_bytes} "
        f"cli_rc={cli.returncode}"
    )
    assert alive_in_lock
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "locked" in cli.stdout + cli.stderr, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stdout + cli.stderr
    assert "database unavailable" in str(ready[1]) and "locked" in str(ready[1])
    assert set(hooks.statuses) <= {202, 503}, statuses
    assert 503 in hooks.statuses and hooks.retry_after == {"5"}
    assert not hooks.errors and len(hooks.accepted) == 20
    assert set(hook_rows(db).values()) == {2}  # every webhook whole, none half-written
    assert distinct == expected and duplicates == 0
    assert read_ledger(db).states == {"sent": expected}
    assert during <= 4  # in flight on the 2 connections at the lock (+ the read race)
    assert log_bytes < 30_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"!!! cannot mount a tmpfs (root needed), full-disk test NOT run: {result}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem holding `directory` to the last byte; return the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size) == size:
                    pass
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler


def test_a_full_disk_refuses_clearly_writes_nothing_half_and_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    total = 400
    cfg = write_config(tmp_path, audience=total, hooks=True)
    db = f"sqlite:///{small_disk / 'ledger.db'}"
    port = free_port()
    filler: Path | None = None
    with Procs(tmp_path) as procs, timed() as elapsed:
        sink = procs.sink("--latency", "0.02")
        env = service_env(
            cfg, database_url=db, smtp_port=sink.port, http_port=port, NOTIFIER_SMTP__POOL_SIZE="2"
        )
        assert asyncio.run(enqueue_now(env, cfg.event_id)) == total
        service = procs.notifier(env, cwd=tmp_path)
        wait_until(lambda: sink.count() >= 40, within=20, what="mail to flow")
        try:
            filler = fill(small_disk)
            full_at = elapsed()
            ready = wait_until(
                lambda: (r := http_get(port, "/readyz"))[0] == 503 and r,
                within=10,
                what="/readyz to report the full disk",
            )
            status, headers = post_hook(port, "full_0001", "磁盘已满时的访客")
            alive_when_full = service.alive()
            at_full = sink.count()
            time.sleep(1.0)
            stalled = sink.count() - at_full
        finally:
            if filler is not None:
                filler.unlink()
        cleared_at = elapsed()
        retried, _ = post_hook(port, "full_0001", "磁盘已满时的访客")
        expected = total + 2
        wait_until(lambda: settled(db, expected), within=30, interval=0.2, what="all sends")
        recovered = elapsed() - cleared_at
        assert http_get(port, "/readyz")[0] == 200
        assert service.terminate(within=15) == 0
        distinct, duplicates = tally(sink.arrivals())
        rows = hook_rows(db)
    log_text = service.log.read_text(encoding="utf-8", errors="replace")
    print(
        f"\n[disk-full] full_for={cleared_at - full_at:.1f}s messages={expected} "
        f"webhook_when_full={status} then={retried} sent_while_full={stalled} "
        f"resumed_in={recovered:.1f}s duplicates={duplicates} log_bytes={len(log_text)}"
    )
    assert alive_when_full
    assert "disk is full" in str(ready[1]), ready
    assert status == 503 and headers.get("Retry-After") == "5"
    assert retried == 202
    assert rows == {"full_0001": 2}  # the refused accept left nothing; the retry is whole
    assert stalled <= 2  # writes stopped, so sends stopped (at most those in flight)
    assert distinct == expected and duplicates == 0
    assert read_ledger(db).states == {"sent": expected}
    assert "disk is full" in log_text
    assert len(log_text) < 30_000
    assert sent_count(db) == expected
    assert os.statvfs(small_disk).f_bavail > 0

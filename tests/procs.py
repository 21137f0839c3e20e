"""Helpers for the tests that run real processes: `notifier run` services and an SMTP sink.

Everything here is bounded in time: waits poll with a deadline, processes are killed at the end
of a test whatever happened (`Procs` is a context manager that owns them), and every process's
output goes to a log file under the test's tmp dir whose tail is shown when something fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from tests.waiting import wait_until

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TZ = ZoneInfo("Asia/Shanghai")
MAIL_FROM = "notifier@fao.example.com"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

T = TypeVar("T")


def notifier_command() -> list[str]:
    """The console script of the venv running the tests (the same install as `make run`)."""
    script = Path(sys.executable).parent / "notifier"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "notifier.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(text.splitlines()[-lines:])


# --- processes ------------------------------------------------------------------------------


class Proc:
    """One child process with its output in a log file."""

    def __init__(self, name: str, args: list[str], *, cwd: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.log = cwd / f"{name}.log"
        self._handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            args, cwd=cwd, env=dict(env), stdout=self._handle, stderr=subprocess.STDOUT
        )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap: nothing of the process runs after this returns."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._handle.close()

    def terminate(self, *, within: float) -> int:
        """SIGTERM, then wait for the exit code (SIGKILL and fail if it takes too long)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {within} s of SIGTERM\n{tail(self.log)}"
            ) from None
        finally:
            self._handle.close()

    def describe(self) -> str:
        return f"--- {self.name} (pid {self.pid}, rc {self.popen.poll()}) ---\n{tail(self.log)}"


class Sink:
    """`tests/sink_main.py` in its own process; reads back what it accepted and injected."""

    def __init__(self, directory: Path, *args: str, name: str = "sink") -> None:
        self.out = directory / f"{name}.arrivals"
        self.faults_file = Path(str(self.out) + ".faults")
        self.ready_file = directory / f"{name}.stdout"
        handle = self.ready_file.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, str(TESTS / "sink_main.py"), "--out", str(self.out), *args],
            cwd=directory,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        line = wait_until(self._ready_line, within=15, what="the SMTP sink to listen")
        self.port = int(line.split()[1])

    def _ready_line(self) -> str | None:
        if self.popen.poll() is not None:
            raise AssertionError(f"SMTP sink exited early:\n{tail(self.ready_file)}")
        for line in self.ready_file.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return line
        return None

    def arrivals(self) -> list[tuple[float, str, str]]:
        """(time, Message-ID, recipient) per accepted message; a torn last line is skipped."""
        if not self.out.exists():
            return []
        found = []
        for line in self.out.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split(" ")
            if len(parts) == 3:
                found.append((float(parts[0]), parts[1], parts[2]))
        return found

    def count(self) -> int:
        if not self.out.exists():
            return 0
        with self.out.open("rb") as handle:
            return sum(1 for _ in handle)

    def injected(self) -> Counter[str]:
        if not self.faults_file.exists():
            return Counter()
        return Counter(
            line.split(" ")[1] for line in self.faults_file.read_text().splitlines() if " " in line
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def tally(arrivals: list[tuple[float, str, str]]) -> tuple[int, int]:
    """(distinct Message-IDs, duplicates = arrivals beyond the first of each Message-ID)."""
    counts = Counter(msg_id for _, msg_id, _ in arrivals)
    return len(counts), sum(c - 1 for c in counts.values())


class Procs:
    """Owns every process a test starts and kills them all at the end, pass or fail."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.services: list[Proc] = []
        self.sinks: list[Sink] = []

    def sink(self, *args: str) -> Sink:
        s = Sink(self.directory, *args, name=f"sink{len(self.sinks) or ''}")
        self.sinks.append(s)
        return s

    def notifier(self, env: Mapping[str, str], *, name: str = "notifier", cwd: Path) -> Proc:
        p = Proc(f"{name}-{len(self.services)}", [*notifier_command(), "run"], cwd=cwd, env=env)
        self.services.append(p)
        return p

    def logs(self) -> str:
        return "\n".join(p.describe() for p in self.services[-4:])

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            print(self.logs())  # pytest shows it with the failure
        for p in self.services:
            with contextlib.suppress(Exception):
                p.kill()
        for s in self.sinks:
            with contextlib.suppress(Exception):
                s.stop()


# --- configuration --------------------------------------------------------------------------

SUBJECT = "【提醒】{{ event.title }}"
BODY = "{{ recipient.name }}：{{ event.title }}，{{ reminder.label }}。\n{{ org }}\n"
HOOK_SUBJECT = "来访申请：{{ payload.visitor }}"
HOOK_BODY = "{{ payload.visitor }} 申请于 {{ payload.date }} 来访。\n"
HOOK_ID = "visit-request"
HOOK_ENV = "NOTIFIER_HOOK_VISIT_REQUEST"
HOOK_SECRET = "whsec_" + "dGVzdC1vbmx5LWhvb2stc2VjcmV0LTI0Yg=="  # test only (not a placeholder)
HOOK_AUDIENCE = ["duty@fao.example.com", "office@fao.example.com"]


@dataclass(frozen=True)
class Config:
    schedules: Path
    templates: Path
    event_id: str
    send_at: datetime
    audience: int


def write_config(
    directory: Path, *, audience: int, send_at: datetime | None = None, hooks: bool = False
) -> Config:
    """A schedule whose one event sends to `audience` CSV rows at `send_at` (local, whole s).

    The event is a one-off dated today with `workdays: ignore`; with `send_at=None` it is set
    far in the future (rows then come from `notifier send` semantics, see `enqueue_now`).
    """
    schedules = directory / "schedules"
    templates = directory / "templates"
    (schedules / "audiences").mkdir(parents=True, exist_ok=True)
    for name, files in {
        "reminder": {"subject.txt": SUBJECT, "body.txt": BODY},
        "visit-notice": {"subject.txt": HOOK_SUBJECT, "body.txt": HOOK_BODY},
    }.items():
        (templates / name).mkdir(parents=True, exist_ok=True)
        for part, text in files.items():
            (templates / name / part).write_text(text, encoding="utf-8")
    with (schedules / "audiences" / "bulk.csv").open("w", encoding="utf-8") as handle:
        handle.write("email,name\n")
        for i in range(audience):
            handle.write(f"user{i:05d}@bureau{i % 17}.example.com,第{i}号单位\n")
    when = send_at or (datetime.now(TZ) + timedelta(days=30))
    when = when.replace(microsecond=0)
    hook_block = ""
    if hooks:
        members = ", ".join(f"{{email: {e}}}" for e in HOOK_AUDIENCE)
        hook_block = textwrap.dedent(
            f"""\
            hooks:
              - id: {HOOK_ID}
                secret_env: {HOOK_ENV}
                template: visit-notice
                audience: duty
            """
        )
        hook_block = f"  duty: [{members}]\n" + hook_block
    text = (
        textwrap.dedent(
            """\
            audiences:
              bulk: {csv: audiences/bulk.csv}
            """
        )
        + hook_block
        + textwrap.dedent(
            f"""\
            events:
              - id: bulk-notice
                title: 年度普法责任清单报送
                date: "{when.date().isoformat()}"
                send_at: "{when:%H:%M:%S}"
                workdays: ignore
                audience: bulk
                reminders: [{{on: start}}]
            """
        )
    )
    (schedules / "main.yaml").write_text(text, encoding="utf-8")
    return Config(schedules, templates, "bulk-notice", when, audience)


def notifier_env(
    config: Config,
    *,
    database_url: str,
    smtp_port: int,
    http_port: int | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of one `notifier run`: only NOTIFIER_* settings the test chooses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        {
            "NOTIFIER_SCHEDULES_DIR": str(config.schedules),
            "NOTIFIER_TEMPLATES_DIR": str(config.templates),
            "NOTIFIER_DATABASE_URL": database_url,
            "NOTIFIER_SMTP__HOST": "127.0.0.1",
            "NOTIFIER_SMTP__PORT": str(smtp_port),
            "NOTIFIER_SMTP__TIMEOUT": "2",
            "NOTIFIER_MAIL_FROM": MAIL_FROM,
            "NOTIFIER_WATCH": "false",
            "NOTIFIER_LOG_FORMAT": "json",
            "NOTIFIER_UNSUBSCRIBE_SECRET": "crash-test-unsubscribe-secret",
            "NOTIFIER_PREPARE_AHEAD": "5m",
            "NOTIFIER_DELIVERY__LEASE_SECONDS": "3",
            "NOTIFIER_DELIVERY__POLL_INTERVAL": "0.2",
            "NOTIFIER_DELIVERY__BASE_DELAY": "0.2",
            "NOTIFIER_DELIVERY__MAX_DELAY": "1",
            "NOTIFIER_DELIVERY__MAX_ATTEMPTS": "50",
            "NOTIFIER_SHUTDOWN_TIMEOUT": "10",
            HOOK_ENV: HOOK_SECRET,
        }
    )
    if http_port is None:
        env["NOTIFIER_HTTP__ENABLED"] = "false"
    else:
        env["NOTIFIER_HTTP__ENABLED"] = "true"
        env["NOTIFIER_HTTP__HOST"] = "127.0.0.1"
        env["NOTIFIER_HTTP__PORT"] = str(http_port)
    env.update(extra)
    return env


def settings_from_env(env: Mapping[str, str]) -> Any:
    """The same Settings a child would build from `env`, for enqueueing in the test process."""
    from notifier.config import Settings

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings(_env_file=None)  # type: ignore[call-arg]
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def enqueue_now(env: Mapping[str, str], event_id: str) -> int:
    """`notifier send EVENT` without the delivery: rows due now, left for the services."""
    from notifier.service import App

    async with App(settings_from_env(env)) as app:
        created, _ = await app.outbox.send_now(event_id, now=app.clock())
    return created


# --- the ledger -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ledger:
    states: Counter[str]
    attempts: int  # total over rows: attempts beyond one per row are retries
    rows: int
    max_attempts: int

    @property
    def retries(self) -> int:
        return self.attempts - self.rows


_LEDGER_SQL = "SELECT state, COUNT(*), COALESCE(SUM(attempts), 0), COALESCE(MAX(attempts), 0)"
_LEDGER_SQL += " FROM deliveries GROUP BY state"


def read_ledger(database_url: str) -> Ledger:
    """State counts and attempts, read straight from the database (no package code)."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as c:
            rows = c.execute(_LEDGER_SQL).fetchall()
    else:
        import psycopg

        with psycopg.connect(database_url, connect_timeout=5) as c:
            rows = c.execute(_LEDGER_SQL).fetchall()
    states = Counter({str(s): int(n) for s, n, _, _ in rows})
    return Ledger(
        states=states,
        attempts=sum(int(a) for _, _, a, _ in rows),
        rows=sum(states.values()),
        max_attempts=max((int(m) for _, _, _, m in rows), default=0),
    )


def sent_count(database_url: str) -> int:
    try:
        return read_ledger(database_url).states.get("sent", 0)
    except sqlite3.OperationalError:
        return 0  # the table is not there yet (the service is still migrating)


def settled(database_url: str, total: int) -> bool:
    """All `total` rows exist and none is left to send (sent, failed, dead...)."""
    try:
        states = read_ledger(database_url).states
    except sqlite3.OperationalError:
        return False
    return states.total() >= total and not states.get("pending") and not states.get("sending")


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    start = time.monotonic()
    yield lambda: time.monotonic() - start


def ledger_message_ids(database_url: str, state: str) -> set[str]:
    """The Message-IDs of the rows in `state`."""
    sql = "SELECT message_id FROM deliveries WHERE state = "
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as c:
            return {str(m) for (m,) in c.execute(sql + "?", (state,))}
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as c:
        return {str(m) for (m,) in c.execute(sql + "%s", (state,))}

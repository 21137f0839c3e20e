"""Delivery throughput: 10,000 small messages to a local SMTP sink in another process.

Rows, alternated round by round (ratios are taken within a round, then the median):
(a) stdlib smtplib, one connection per message; (b) bare aiosmtplib over 8 reused connections
sending prebuilt messages (the yardstick of issue 23); (c) notifier from a filled ledger (rows
pending -> all recorded `sent`), SQLite and PostgreSQL; (d) end to end: `notifier send` (start
-up, render, MIME, enqueue, send, record) with `notifier run` already running beside it on the
same SQLite ledger; (e) 1 and 3 instances (processes) on one fresh PostgreSQL ledger, started
together; (f) 3 bare clients at once (what the sink takes), with how busy the cores and the
sink were.

    .venv/bin/python bench/delivery.py [--count 10000] [--repeat 5] [--sink auto|c|python]
        [--only a,b,sqlite,pg,e2e,pg3]
"""

from __future__ import annotations

import os
import sys

# bench/calendar.py would shadow the standard `calendar` module: keep bench/ off sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.append(os.path.dirname(_HERE))  # for `bench._common`; PYTHONPATH may override notifier

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import smtplib  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Coroutine  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any, TypeVar  # noqa: E402

from bench._common import (  # noqa: E402
    ROOT,
    machine,
    median,
    pg_database,
    smtp_sink,
    table,
    write_audience_csv,
    write_templates,
)

FROM = "notifier@bench.example.com"
POOL = 8
TIME_BOUND_S = 120.0  # per row and repeat: a stuck run is a result, not a hang


def sample_message(i: int) -> bytes:
    """About the size of a notifier reminder (~600 bytes)."""
    return (
        f"From: notifier <{FROM}>\r\nTo: user{i}@example.com\r\n"
        f"Subject: =?utf-8?b?44CQ5o+Q6YaS44CR5YWo5rCR5Zu95a625a6J5YWo5pWZ6IKy5pel?=\r\n"
        f"Message-ID: <{i}.bench@bench.example.com>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + "5YWo5rCR5Zu95a625a6J5YWo5pWZ6IKy5pel6L+Y5pyJ5Y2B5aSp44CC5o+Q6YaS77ya5o+Q5YmNMTDlpKkK\r\n"
        * 6
    ).encode()


if TYPE_CHECKING:
    from notifier.config import Settings

T = TypeVar("T")

# The event loop of the in-process rows and the children: `notifier run`'s own by default
# (uvloop where installed: NOTIFIER_EVENT_LOOP=auto), so that what is measured is what ships.
LOOP = "auto"


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on LOOP's event loop (the bare client too: ratios compare like with like)."""
    factory = None
    if LOOP != "asyncio":
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            if LOOP == "uvloop":
                raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def bench_smtplib(port: int, count: int) -> float:
    """(a) the naive client: connect, send, quit, for every message."""
    msgs = [sample_message(i) for i in range(count)]
    start = time.perf_counter()
    for i, msg in enumerate(msgs):
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(FROM, [f"user{i}@example.com"], msg)
    return time.perf_counter() - start


async def _bench_aiosmtplib(port: int, count: int) -> float:
    import aiosmtplib

    msgs = [sample_message(i) for i in range(count)]
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) for _ in range(POOL)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    queue = iter(range(count))

    async def lane(client: aiosmtplib.SMTP) -> None:
        for i in queue:
            await client.sendmail(FROM, [f"user{i}@example.com"], msgs[i])

    start = time.perf_counter()
    await asyncio.gather(*(lane(c) for c in clients))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(c.quit() for c in clients))
    return elapsed


def bench_aiosmtplib(port: int, count: int) -> float:
    """(b) the client library's limit: 8 connections, reused, connected before timing."""
    return run_loop(_bench_aiosmtplib(port, count))


def bench_settings(work: Path, port: int, database_url: str) -> Settings:
    """The in-process rows' and children's settings: the config under `work` (see
    `write_bench_config`), the sink, POOL connections, no HTTP side, shipped delivery."""
    from notifier.config import HttpSettings, Settings, SmtpSettings

    return Settings(
        _env_file=None,
        schedules_dir=work / "schedules",
        templates_dir=work / "templates",
        database_url=database_url,
        mail_from=FROM,
        smtp=SmtpSettings(host="127.0.0.1", port=port, pool_size=POOL),
        mail_drop_dir=work / "mail",
        watch=False,
        http=HttpSettings(enabled=False),
        unsubscribe_secret="bench-unsubscribe-secret",
    )


async def _bench_notifier(port: int, count: int, database_url: str, work: Path) -> float:
    from notifier.ledger.models import State
    from notifier.service import App

    write_bench_config(work, count)
    settings = bench_settings(work, port, database_url)
    async with App(settings) as app:
        created, _ = await app.outbox.send_now("bench", now=time.time(), again=True)
        assert created == count, f"enqueued {created} of {count}"
        start = time.perf_counter()
        stats = await asyncio.wait_for(app.worker.run_until_idle(), TIME_BOUND_S)
        elapsed = time.perf_counter() - start
        counts = await app.store.count_by_state()
        sent = sum(n for (_, state), n in counts.items() if state == State.SENT.value)
        # earlier repeats in the same database are sent too
        assert stats.sent == count and sent % count == 0, (stats, counts)
    return elapsed


def bench_notifier(port: int, count: int, database_url: str, work: Path) -> float:
    """(c) notifier: claim, send through its SMTP pool, record each outcome."""
    return run_loop(_bench_notifier(port, count, database_url, work))


# --- rows with processes of their own: end to end, and several instances ----------------


def write_bench_config(work: Path, count: int) -> None:
    """Schedules (one event, a `count`-recipient internal audience, 30 days ahead) and
    templates under `work`, as `notifier` reads them from its environment."""
    schedules, templates = work / "schedules", work / "templates"
    schedules.mkdir(parents=True, exist_ok=True)
    write_templates(templates)
    csv_path = work / "schedules" / "audience.csv"  # audience files live under schedules/
    if not csv_path.exists():
        write_audience_csv(csv_path, count)
    day = (datetime.now() + timedelta(days=30)).date().isoformat()
    (schedules / "bench.yaml").write_text(
        "audiences:\n"
        f"  bulk: {{csv: {csv_path}, external: false}}\n"
        "events:\n"
        "  - id: bench\n"
        "    title: 全民国家安全教育日\n"
        f'    date: "{day}"\n'
        "    workdays: ignore\n"
        "    audience: bulk\n"
        "    reminders: [{on: start}]\n",
        encoding="utf-8",
    )


def notifier_env(work: Path, port: int, database_url: str) -> dict[str, str]:
    """`notifier`'s settings as a deployment sets them: shipped defaults but for where things
    are (poll interval, lease, batch and pool as shipped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        {
            "NOTIFIER_SCHEDULES_DIR": str(work / "schedules"),
            "NOTIFIER_TEMPLATES_DIR": str(work / "templates"),
            "NOTIFIER_DATABASE_URL": database_url,
            "NOTIFIER_SMTP__HOST": "127.0.0.1",
            "NOTIFIER_SMTP__PORT": str(port),
            "NOTIFIER_SMTP__POOL_SIZE": str(POOL),
            "NOTIFIER_MAIL_FROM": FROM,
            "NOTIFIER_WATCH": "false",
            "NOTIFIER_HTTP__ENABLED": "false",
            "NOTIFIER_LOG_FORMAT": "json",
            "NOTIFIER_UNSUBSCRIBE_SECRET": "bench-unsubscribe-secret",
        }
    )
    return env


def _notifier_cmd(*args: str) -> list[str]:
    # `-m`, not the venv's script: PYTHONPATH (bench/ab.py, an older revision) must apply.
    return [sys.executable, "-m", "notifier.cli", *args]


def _sent_in(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            (n,) = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone()
            return int(n)
    except sqlite3.Error:
        return 0  # not created yet, or locked for a moment


def _wait_for(what: str, ok: Callable[[], bool], within: float, step: float = 0.01) -> None:
    deadline = time.monotonic() + within
    while not ok():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:g} s")
        time.sleep(step)


def bench_end_to_end(port: int, count: int, work: Path) -> float:
    """(d) what an office does: `notifier send` (start-up, render, MIME, enqueue, send, record)
    to a `count`-recipient audience, with `notifier run` already running beside it on the same
    SQLite ledger (both deliver). Timed from the start of `notifier send` until every row is
    recorded sent and `notifier send` has exited."""
    run_dir = Path(tempfile.mkdtemp(prefix="e2e-", dir=work))
    write_bench_config(work, count)
    db = run_dir / "ledger.db"
    env = notifier_env(work, port, f"sqlite:///{db}")
    with (run_dir / "run.log").open("wb") as log:
        service = subprocess.Popen(
            _notifier_cmd("run"), cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        # Ready once its worker has looked at the (migrated, empty) ledger: the timer's line
        # comes after the first plan, right before the workers start.
        _wait_for(
            "notifier run to start",
            lambda: (
                b'"timer_set"' in (run_dir / "run.log").read_bytes() or service.poll() is not None
            ),
            within=60,
        )
        if service.poll() is not None:
            raise RuntimeError((run_dir / "run.log").read_text(errors="replace")[-3000:])
        time.sleep(0.3)
        start = time.perf_counter()
        with (run_dir / "send.log").open("wb") as log:
            send = subprocess.Popen(
                _notifier_cmd("send", "bench"),
                cwd=run_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            _wait_for(
                "every row recorded sent",
                lambda: _sent_in(db) >= count or send.poll() not in (None, 0),
                within=TIME_BOUND_S,
            )
            code = send.wait(timeout=TIME_BOUND_S)
        elapsed = time.perf_counter() - start
        if code != 0 or _sent_in(db) != count:
            raise RuntimeError(
                f"notifier send exited {code}, {_sent_in(db)} of {count} sent:\n"
                + (run_dir / "send.log").read_text(errors="replace")[-3000:]
            )
        return elapsed
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


# Child processes for the several-instances rows: each prepares, says "ready", waits for "go"
# on stdin, works, and prints what it did as JSON (its end time on the shared wall clock).


async def _child_instance(port: int, database_url: str, work: Path) -> dict[str, float]:
    from notifier.service import App

    settings = bench_settings(work, port, database_url)
    async with App(settings) as app:
        await app.store.ping()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stats = await asyncio.wait_for(app.worker.run_until_idle(), TIME_BOUND_S)
        return {"sent": stats.sent, "end": time.time()}


async def _child_bare(port: int, count: int) -> dict[str, float]:
    import aiosmtplib

    msgs = [sample_message(i) for i in range(count)]
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) for _ in range(POOL)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    queue = iter(range(count))

    async def lane(client: aiosmtplib.SMTP) -> None:
        for i in queue:
            await client.sendmail(FROM, [f"user{i}@example.com"], msgs[i])

    await asyncio.gather(*(lane(c) for c in clients))
    end = time.time()
    await asyncio.gather(*(c.quit() for c in clients))
    return {"sent": count, "end": end}


def child_main(args: argparse.Namespace) -> None:
    kind, port = args.child, args.port
    if kind == "bare":
        result = run_loop(_child_bare(port, args.count))
    else:
        result = run_loop(_child_instance(port, args.database_url, Path(args.work)))
    print(json.dumps(result), flush=True)


class CpuShare:
    """How busy the machine's cores and the sink were between creation and `read()`: so a
    several-processes row can show what limited it (all cores busy, or the sink's one core)."""

    def __init__(self, sink_pid: int | None) -> None:
        self.sink_pid = sink_pid
        self.start = (self._machine(), self._sink(), time.monotonic())

    @staticmethod
    def _machine() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def _sink(self) -> int:
        if self.sink_pid is None:
            return 0
        try:
            stat = Path(f"/proc/{self.sink_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        return int(stat[11]) + int(stat[12])  # utime + stime, in clock ticks

    def read(self) -> tuple[float, float]:
        """(machine busy, share of all cores; the sink's CPU, share of one core)."""
        (busy0, total0), sink0, t0 = self.start
        busy1, total1 = self._machine()
        ticks = os.sysconf("SC_CLK_TCK")
        sink = (self._sink() - sink0) / ticks / max(time.monotonic() - t0, 1e-9)
        return (busy1 - busy0) / max(total1 - total0, 1), sink


SINK_PID: int | None = None
# (machine busy, sink CPU) of each several-processes run, in the order they ran.
CPU_SHARES: list[tuple[float, float]] = []


def _together(children: list[list[str]], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Start the children, wait until every one is ready, say go to all at once; the seconds
    from go to the last one's end, and the messages they sent together."""
    procs = [
        subprocess.Popen(
            c, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, cwd=ROOT
        )
        for c in children
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"child not ready: {line!r}")
        busy = CpuShare(SINK_PID)
        start = time.time()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=TIME_BOUND_S)
            results.append(json.loads(out.strip().splitlines()[-1]))
        CPU_SHARES.append(busy.read())
        return max(r["end"] for r in results) - start, int(sum(r["sent"] for r in results))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def bench_instances(port: int, count: int, n: int, work: Path) -> float:
    """(e) `n` instances (processes) on one fresh PostgreSQL ledger filled with `count` due
    rows, all started at once: seconds until the last one finds nothing more to send."""
    write_bench_config(work, count)
    with pg_database() as url:
        if url is None:
            raise RuntimeError("PostgreSQL not available")
        asyncio.run(_fill(port, count, url, work))
        me = [sys.executable, os.path.abspath(__file__), "--port", str(port), "--loop", LOOP]
        child = [*me, "--child", "instance", "--database-url", url, "--work", str(work)]
        elapsed, sent = _together([child] * n)
    if sent != count:
        raise RuntimeError(f"{n} instances sent {sent} of {count}")
    return elapsed


async def _fill(port: int, count: int, database_url: str, work: Path) -> None:
    from notifier.service import App

    settings = bench_settings(work, port, database_url)
    async with App(settings) as app:
        created, _ = await app.outbox.send_now("bench", now=time.time(), again=True)
        assert created == count, f"enqueued {created} of {count}"


def bench_bare_together(port: int, count: int, n: int) -> float:
    """(f) `n` bare clients (processes, 8 connections each) at once, `count` messages each:
    what the sink takes when several senders push (so it is not what limits (e))."""
    me = [sys.executable, os.path.abspath(__file__), "--port", str(port), "--loop", LOOP]
    elapsed, sent = _together([[*me, "--child", "bare", "--count", str(count)]] * n)
    assert sent == n * count
    return elapsed / n  # per `count` messages, so that count / seconds is the aggregate rate


A = "(a) smtplib, new connection per message"
B = f"(b) aiosmtplib, {POOL} reused connections, prebuilt messages"
C_SQLITE = "(c) notifier from a filled ledger, SQLite"
C_PG = "(c) notifier from a filled ledger, PostgreSQL"
D = "(d) end to end: `notifier send` beside `notifier run`, SQLite"
E1 = "(e) PostgreSQL, 1 instance (process)"
E3 = "(e) PostgreSQL, 3 instances at once, aggregate"
F3 = "(f) 3 bare clients (b) at once, aggregate"
# The goals of issue 23 (ratios taken round by round, then the median).
GOALS = (
    (D, B, 0.7, "end to end >= 0.7 of the bare pooled client, SQLite"),
    (C_PG, C_SQLITE, 0.8, "PostgreSQL >= 0.8 of SQLite, from a filled ledger"),
    (E3, E1, 1.5, "3 instances on one PostgreSQL >= 1.5x one"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sink", choices=["auto", "c", "python"], default="auto")
    parser.add_argument("--only", help="comma-separated subset of a,b,sqlite,pg,e2e,pg3")
    parser.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop of the in-process rows and children (auto: as `notifier run`)",
    )
    # The several-instances rows run this script again as their children.
    parser.add_argument("--child", choices=["instance", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global LOOP
    LOOP = args.loop
    if args.child:
        child_main(args)
        return
    only = set(args.only.split(",")) if args.only else {"a", "b", "sqlite", "pg", "e2e", "pg3"}
    count = args.count
    results: dict[str, list[float]] = {}
    shares: dict[str, list[tuple[float, float]]] = {}
    global SINK_PID
    with smtp_sink(args.sink) as sink, tempfile.TemporaryDirectory(prefix="nf-bench-") as tmp:
        work = Path(tmp)
        port = sink.port
        SINK_PID = sink.proc.pid
        with pg_database() as pg_url:
            runs: list[tuple[str, Callable[[], float]]] = []
            if "a" in only:
                runs.append((A, lambda: bench_smtplib(port, count)))
            if "b" in only:
                runs.append((B, lambda: bench_aiosmtplib(port, count)))
            if "sqlite" in only:
                url = f"sqlite:///{work / 'bench.db'}"
                runs.append((C_SQLITE, lambda: bench_notifier(port, count, url, work)))
            if "pg" in only and pg_url:
                runs.append((C_PG, lambda u=pg_url: bench_notifier(port, count, u, work)))
            if "e2e" in only:
                runs.append((D, lambda: bench_end_to_end(port, count, work)))
            if "pg3" in only and pg_url:
                runs.append((E1, lambda: bench_instances(port, count, 1, work / "e1")))
                runs.append((E3, lambda: bench_instances(port, count, 3, work / "e3")))
                runs.append((F3, lambda: bench_bare_together(port, count, 3)))
            for i in range(args.repeat):  # interleaved, so drift hits every row alike
                for name, fn in runs:
                    results.setdefault(name, []).append(fn())
                    if name in (E1, E3, F3):
                        shares.setdefault(name, []).append(CPU_SHARES[-1])
                    print(
                        f"round {i + 1}: {name}: {count / results[name][-1]:,.0f} msg/s",
                        file=sys.stderr,
                        flush=True,
                    )
    print(report(results, count, args.repeat, shares))
    print(
        f"\n{machine(sink.kind)}; event loop: {LOOP}; "
        f"load average before/after: {LOAD_BEFORE} / {load()}"
    )


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


LOAD_BEFORE = load()


def ratios(results: dict[str, list[float]], row: str, base: str) -> list[float]:
    """row/base rate, round by round (seconds: base/row)."""
    return [b / r for r, b in zip(results[row], results[base], strict=False)]


def report(
    results: dict[str, list[float]],
    count: int,
    repeat: int,
    shares: dict[str, list[tuple[float, float]]],
) -> str:
    rate = {name: count / median(times) for name, times in results.items()}
    rows = []
    for name, times in results.items():
        by_b = ratios(results, name, B) if B in results else []
        by_a = ratios(results, name, A) if A in results else []
        rows.append(
            [
                name,
                f"{rate[name]:,.0f}",
                f"{count / max(times):,.0f}-{count / min(times):,.0f}",
                f"{median(by_b):.2f} ({min(by_b):.2f}-{max(by_b):.2f})" if by_b else "-",
                f"{median(by_a):.2f}" if by_a else "-",
            ]
        )
    out = [f"## Delivery: {count:,} messages, {repeat} rounds, rows alternated\n"]
    out.append(
        table(["row", "msg/s (median)", "range", "x (b), per round: median (range)", "x (a)"], rows)
    )
    out.append("")
    for row, base, goal, words in GOALS:
        if row in results and base in results:
            r = ratios(results, row, base)
            met = "met" if median(r) >= goal else "NOT met"
            shown = ", ".join(f"{x:.2f}" for x in r)
            out.append(f"- goal {words}: {met}, median {median(r):.2f} (rounds: {shown})")
    if F3 in rate and E3 in rate:
        out.append(
            f"- the sink took {rate[F3]:,.0f} msg/s from 3 bare clients at once, "
            f"{rate[F3] / rate[E3]:.2f}x what 3 instances sent"
        )
    for name, got in shares.items():
        machine_busy = median([m for m, _ in got])
        sink_busy = median([k for _, k in got])
        out.append(
            f"- during {name}: the {os.cpu_count()} cores {machine_busy:.0%} busy"
            f" (all processes, others' too), the sink {sink_busy:.0%} of one core (medians)"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()

"""Webhooks: signed, durable accepts by `notifier run` beside a bare aiohttp JSON handler.

Starts, as subprocesses, the real service (`notifier run`: SQLite in a temp dir, mail drop, one
hook, a free port, NOTIFIER_WATCH=false) and a bare aiohttp server whose one handler parses JSON
and answers 202. Drives both from this process over loopback with the same signed requests
(10 connections; bounded by a request count and a time limit), alternating rounds, and prints
accepted req/s, p50/p99 latency and the ratio notifier/bare. Stops everything it started.

By default each payload carries `send_at` a day ahead, so the numbers measure the accept path
(verify, render, group commit) and not SMTP-less delivery of the same rows (`bench/delivery.py`
measures that); `--deliver-now` sends them at once instead, the worker competing for the CPU.

    .venv/bin/python bench/webhooks.py [--requests 5000] [--seconds 20] [--rounds 2]
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
import base64  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

from bench._common import machine, table  # noqa: E402

CONNECTIONS = 10
WARMUP = 300
SECRET = "whsec_" + base64.b64encode(b"bench-secret-0123456789abcdefghij").decode()
HOOK = "bench"
SCHEDULE = """\
audiences:
  staff:
    - {email: office@bench.example.com, name: 办公室}
hooks:
  - id: bench
    secret_env: NOTIFIER_HOOK_BENCH
    template: visit-notice
    audience: staff
"""
TEMPLATES = {
    "subject.txt": "来访申请：{{ payload.visitor }}（{{ payload.org }}）",
    "body.txt": "{{ payload.visitor }}（{{ payload.org }}）申请于 {{ payload.date }} 来访。\n",
}
BARE_SERVER = """\
import asyncio, sys
from aiohttp import web

async def handle(request):
    await request.json()
    return web.json_response({"ok": True}, status=202)

if sys.argv[2] == "uvloop":
    import uvloop
    loop = uvloop.new_event_loop()
else:
    loop = asyncio.new_event_loop()
app = web.Application()
app.router.add_post("/hooks/{hook_id}", handle)
web.run_app(
    app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, loop=loop
)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def write_config(root: Path) -> None:
    (root / "schedules").mkdir()
    (root / "schedules" / "hooks.yaml").write_text(SCHEDULE, encoding="utf-8")
    template = root / "templates" / "visit-notice"
    template.mkdir(parents=True)
    for name, text in TEMPLATES.items():
        (template / name).write_text(text, encoding="utf-8")


def clean_env() -> dict[str, str]:
    """This process's environment without NOTIFIER_ settings (they would leak into servers)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}


def service_env(root: Path, port: int, loop: str) -> dict[str, str]:
    """`notifier run` on the config of `write_config(root)`: SQLite, mail drop, one hook."""
    return {
        **clean_env(),
        "NOTIFIER_SCHEDULES_DIR": str(root / "schedules"),
        "NOTIFIER_TEMPLATES_DIR": str(root / "templates"),
        "NOTIFIER_DATABASE_URL": f"sqlite:///{root / 'ledger.db'}",
        "NOTIFIER_MAIL_DROP_DIR": str(root / "mail"),
        "NOTIFIER_HTTP__PORT": str(port),
        "NOTIFIER_WATCH": "false",
        "NOTIFIER_UNSUBSCRIBE_SECRET": "bench-unsubscribe-secret",
        "NOTIFIER_HOOK_BENCH": SECRET,
        "NOTIFIER_EVENT_LOOP": loop,
    }


@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]


def make_requests(count: int, *, deliver_now: bool) -> list[Request]:
    """Signed before the clock starts: the client's CPU is shared with the servers."""
    from notifier.signing import sign

    send_at = None if deliver_now else (datetime.now().astimezone() + timedelta(days=1))
    out = []
    for i in range(count):
        payload = {"visitor": f"访客{i}", "org": "ACME 公司", "date": "2026-05-01"}
        if send_at is not None:
            payload["send_at"] = send_at.isoformat(timespec="seconds")
        body = json.dumps(payload, ensure_ascii=False).encode()
        msg_id = f"msg_{uuid.uuid4().hex}"
        ts = int(time.time())
        out.append(
            Request(
                body,
                {
                    "content-type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(ts),
                    "webhook-signature": sign(SECRET, msg_id, ts, body),
                },
            )
        )
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Result:
    accepted: int
    other: int
    seconds: float
    latencies_ms: list[float]
    cpu_s: float | None = None  # the server's CPU time during the round

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(url: str, requests: list[Request], seconds: float) -> Result:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    it = iter(requests)
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for req in it:
                if time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                async with session.post(url, data=req.body, headers=req.headers) as resp:
                    await resp.read()
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - start
    accepted = statuses.get(202, 0)
    return Result(accepted, sum(statuses.values()) - accepted, elapsed, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="per round and server")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--deliver-now", action="store_true", help="no send_at: deliver at once")
    parser.add_argument(
        "--secret-in-dotenv",
        action="store_true",
        help="the hook secret in the service's `.env` file instead of its environment",
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop of both servers (auto: uvloop if installed, as `notifier run` does)",
    )
    args = parser.parse_args()
    loop = args.loop
    if loop == "auto":
        try:
            import uvloop  # noqa: F401

            loop = "uvloop"
        except ImportError:
            loop = "asyncio"

    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        root = Path(tmp)
        write_config(root)
        notifier_port, bare_port = free_port(), free_port()
        env = service_env(root, notifier_port, loop)
        if args.secret_in_dotenv:
            (root / ".env").write_text(f"NOTIFIER_HOOK_BENCH={env.pop('NOTIFIER_HOOK_BENCH')}\n")
        log = (root / "notifier.log").open("wb")
        service = subprocess.Popen(
            [sys.executable, "-m", "notifier.cli", "run"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        bare = subprocess.Popen(
            [sys.executable, "-c", BARE_SERVER, str(bare_port), loop],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        codes: dict[str, int] = {}
        try:
            wait_port(notifier_port, service, "notifier run")
            wait_port(bare_port, bare, "bare server")
            urls = {
                "bare": f"http://127.0.0.1:{bare_port}/hooks/{HOOK}",
                "notifier": f"http://127.0.0.1:{notifier_port}/hooks/{HOOK}",
            }
            for url in urls.values():  # warm both (imports, caches, the JIT-less first path)
                asyncio.run(drive(url, make_requests(WARMUP, deliver_now=False), 10))
            results: dict[str, list[Result]] = {"bare": [], "notifier": []}
            pids = {"bare": bare.pid, "notifier": service.pid}
            for _ in range(args.rounds):
                for name, url in urls.items():
                    batch = make_requests(args.requests, deliver_now=args.deliver_now)
                    before = cpu_seconds(pids[name])
                    result = asyncio.run(drive(url, batch, args.seconds))
                    after = cpu_seconds(pids[name])
                    if before is not None and after is not None:
                        result = dataclasses.replace(result, cpu_s=after - before)
                    results[name].append(result)
        finally:
            codes["notifier"] = stop(service)
            codes["bare"] = stop(bare)
            log.close()

        with sqlite3.connect(root / "ledger.db") as db:
            rows = db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
            receipts = db.execute("SELECT COUNT(*) FROM hook_receipts").fetchone()[0]

    def summary(name: str) -> list[object]:
        rs = results[name]
        lat = [ms for r in rs for ms in r.latencies_ms]
        merged = Result(sum(r.accepted for r in rs), sum(r.other for r in rs), 1.0, lat)
        handled = sum(r.accepted + r.other for r in rs)
        cpu = [r.cpu_s for r in rs if r.cpu_s is not None]
        cpu_us = f"{1e6 * sum(cpu) / handled:.0f}" if cpu and handled else "n/a"
        return [
            name,
            sum(r.accepted for r in rs),
            sum(r.other for r in rs),
            f"{statistics.mean(r.rate for r in rs):,.0f}",
            f"{merged.pct(0.50):.2f}",
            f"{merged.pct(0.99):.2f}",
            cpu_us,
        ]

    ratio = statistics.mean(r.rate for r in results["notifier"]) / statistics.mean(
        r.rate for r in results["bare"]
    )
    print("## Webhooks: signed, durable accepts beside a bare aiohttp handler (issue 3)\n")
    print(
        f"{args.rounds} rounds x {args.requests} requests (or {args.seconds:.0f} s) per server, "
        f"{CONNECTIONS} connections, loopback, Python aiohttp client; both servers on {loop}; "
        f"delivery {'at once' if args.deliver_now else 'deferred (send_at +1 day)'}; "
        f"hook secret in {'.env' if args.secret_in_dotenv else 'the environment'}"
    )
    print(
        table(
            ["server", "accepted", "other", "req/s", "p50 ms", "p99 ms", "server CPU µs/req"],
            [summary("bare"), summary("notifier")],
        )
    )
    print(f"ratio notifier/bare: {ratio:.0%} (goal >= 50%)")
    busy = {
        name: sum(r.cpu_s or 0.0 for r in rs) / sum(r.seconds for r in rs)
        for name, rs in results.items()
    }
    if all(r.cpu_s is not None for rs in results.values() for r in rs):
        # Below 100%, a server waited for the load generator: its rate is a lower bound.
        print(
            "server CPU busy (one core = 100%): "
            + ", ".join(f"{name} {share:.0%}" for name, share in busy.items())
        )
    print(
        f"ledger after the run: {rows} rows, {receipts} receipts "
        f"(warm-up {WARMUP} included); exit codes {codes}"
    )
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()

"""Chat delivery: (a) 1,000 messages to the local robot stand-in with limits off, notifier end
to end against a bare aiohttp client posting the same bodies; (b) one robot at its real
20 a minute: 25 messages, time to the last, none lost or throttled.

The stand-in (tests/robots.py) runs in its own process, as the SMTP sink does.

    .venv/bin/python bench/chat.py [--count 1000] [--repeat 3] [--only a,b] [--paced 25]
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
import dataclasses  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

from bench._common import ROOT, free_port, machine, median, table, wait_port, write_templates  # noqa: E402

LANES = 8
TIME_BOUND_S = 300.0


@contextlib.contextmanager
def stand_in(*, limits: bool) -> Iterator[int]:
    port = free_port()
    args = [sys.executable, "-m", "tests.robots", str(port)] + (["--limits"] if limits else [])
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def robot_stats(port: int, name: str) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/{name}", timeout=5) as resp:
        return dict(json.load(resp))


def setup(work: Path, port: int, key: str, *, per_minute: str) -> dict[str, object]:
    schedules, templates = work / "schedules", work / "templates"
    schedules.mkdir(parents=True, exist_ok=True)
    write_templates(templates)
    day = (datetime.now() + timedelta(days=30)).date().isoformat()
    (schedules / "bench.yaml").write_text(
        "channels:\n"
        "  bench-wecom:\n"
        "    type: wecom\n"
        "    url_env: BENCH_CHAT_URL\n"
        f"    concurrency: {LANES}\n"
        f"{per_minute}"
        "audiences:\n"
        "  staff: [{email: a@bench.example.com}]\n"
        "  group: {chat: bench-wecom}\n"
        "events:\n"
        "  - id: bench\n"
        "    title: 全民国家安全教育日\n"
        f'    date: "{day}"\n'
        "    workdays: ignore\n"
        "    audience: group\n"
        "    reminders: [{on: start}]\n",
        encoding="utf-8",
    )
    os.environ["BENCH_CHAT_URL"] = f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={key}"
    return {"schedules_dir": schedules, "templates_dir": templates}


async def _notifier(
    work: Path, port: int, count: int, key: str, per_minute: str
) -> tuple[float, list[object]]:
    from notifier.config import HttpSettings, Settings
    from notifier.service import App

    dirs = setup(work, port, key, per_minute=per_minute)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{work / f'{key}.db'}",
        mail_drop_dir=work / "mail",
        watch=False,
        http=HttpSettings(enabled=False),
        unsubscribe_secret="bench-unsubscribe-secret",  # type: ignore[arg-type]
        **dirs,  # type: ignore[arg-type]
    )
    async with App(settings) as app:
        now = time.time()
        _, rows = app.outbox.manual_rows("bench", reminder_id=None, on=None, now=now, again=True)
        first = next(rows)
        batch = [dataclasses.replace(first, key=f"{first.key}/{i}") for i in range(count)]
        assert await app.store.enqueue(batch, now=now) == count
        start = time.perf_counter()
        stats = await asyncio.wait_for(app.chat_worker.run_until_idle(), TIME_BOUND_S)
        elapsed = time.perf_counter() - start
        done = await app.store.list_deliveries(limit=count + 10)
        assert stats.sent == count, stats
    return elapsed, [d for d in done if d.state.value != "sent" or d.attempts != 1]


def bench_notifier(
    work: Path, port: int, count: int, key: str, per_minute: str = "    per_minute: 0\n"
) -> tuple[float, list[object]]:
    return asyncio.run(_notifier(work, port, count, key, per_minute))


async def _bare(port: int, count: int, key: str, body: bytes) -> float:
    import aiohttp

    url = f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={key}"
    todo = iter(range(count))
    async with aiohttp.ClientSession() as session:

        async def lane() -> None:
            for _ in todo:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    data = await resp.json(content_type=None)
                    assert data["errcode"] == 0, data

        start = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(LANES)))
        return time.perf_counter() - start


def sample_body(work: Path, port: int) -> bytes:
    """The body notifier posts for the bench event (rendered once, outside the timing)."""

    async def render() -> bytes:
        from notifier.config import HttpSettings, Settings
        from notifier.service import App

        dirs = setup(work / "render", port, "render", per_minute="")
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=f"sqlite:///{work / 'render.db'}",
            mail_drop_dir=work / "mail",
            watch=False,
            http=HttpSettings(enabled=False),
            unsubscribe_secret="bench-unsubscribe-secret",  # type: ignore[arg-type]
            **dirs,  # type: ignore[arg-type]
        )
        async with App(settings) as app:
            _, rows = app.outbox.manual_rows(
                "bench", reminder_id=None, on=None, now=time.time(), again=True
            )
            return next(rows).message.encode()

    return asyncio.run(render())


def spread(count: int, times: list[float]) -> str:
    return f"{count / max(times):,.0f}-{count / min(times):,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paced", type=int, default=25)
    parser.add_argument("--only", default="a,b")
    args = parser.parse_args()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="nf-chat-") as tmp:
        work = Path(tmp)
        print("## Chat robots: the local stand-in (tests/robots.py) in its own process\n")
        if "a" in only:
            with stand_in(limits=False) as port:
                body = sample_body(work, port)
                times: dict[str, list[float]] = {"bare": [], "notifier": []}
                for i in range(args.repeat):  # interleaved: drift hits both rows alike
                    times["bare"].append(asyncio.run(_bare(port, args.count, f"bare{i}", body)))
                    elapsed, bad = bench_notifier(work, port, args.count, f"nf{i}")
                    assert not bad, bad[:3]
                    times["notifier"].append(elapsed)
                    got = robot_stats(port, f"nf{i}")
                    assert got["received"] == args.count, got
            rate = {k: args.count / median(v) for k, v in times.items()}
            rows = [
                [
                    "bare aiohttp client, same bodies",
                    f"{rate['bare']:,.0f}",
                    spread(args.count, times["bare"]),
                    "1.00",
                ],
                [
                    "notifier end to end (ledger -> sent)",
                    f"{rate['notifier']:,.0f}",
                    spread(args.count, times["notifier"]),
                    f"{rate['notifier'] / rate['bare']:.2f}",
                ],
            ]
            print(
                f"### (a) {args.count:,} WeCom messages, limits off, {LANES} lanes,"
                f" median of {args.repeat}\n"
            )
            print(table(["row", "msg/s (median)", "range", "x bare"], rows))
            print()
        if "b" in only:
            with stand_in(limits=True) as port:
                elapsed, bad = bench_notifier(work, port, args.paced, "paced", per_minute="")
                got = robot_stats(port, "paced")
            print(
                f"### (b) A robot's real pace: {args.paced} messages to one WeCom robot at 20/min\n"
            )
            print(
                table(
                    [
                        "messages",
                        "first to last sent (s)",
                        "received",
                        "throttled (robot)",
                        "rows not sent at the first attempt",
                    ],
                    [[args.paced, f"{elapsed:.1f}", got["received"], got["throttled"], len(bad)]],
                )
            )
            print()
        print(machine())


if __name__ == "__main__":
    main()

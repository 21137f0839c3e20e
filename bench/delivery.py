"""Delivery throughput: 10,000 small messages to a local SMTP sink in another process.

Rows: (a) stdlib smtplib, one connection per message; (b) bare aiosmtplib over 8 reused
connections (the client library's limit); (c) notifier end to end, rows pending in the ledger
-> all recorded `sent`, on SQLite and PostgreSQL (enqueued beforehand, not timed).

    .venv/bin/python bench/delivery.py [--count 10000] [--repeat 3] [--sink auto|c|python]
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
import smtplib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

from bench._common import (  # noqa: E402
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
    return asyncio.run(_bench_aiosmtplib(port, count))


async def _bench_notifier(port: int, count: int, database_url: str, work: Path) -> float:
    from notifier.config import DeliverySettings, HttpSettings, Settings, SmtpSettings
    from notifier.ledger.models import State
    from notifier.service import App

    schedules, templates = work / "schedules", work / "templates"
    schedules.mkdir(exist_ok=True)
    write_templates(templates)
    csv_path = work / "schedules" / "audience.csv"
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
    settings = Settings(
        _env_file=None,
        schedules_dir=schedules,
        templates_dir=templates,
        database_url=database_url,
        mail_from=FROM,
        smtp=SmtpSettings(host="127.0.0.1", port=port, pool_size=POOL),
        mail_drop_dir=work / "mail",
        delivery=DeliverySettings(),
        watch=False,
        http=HttpSettings(enabled=False),
        unsubscribe_secret="bench-unsubscribe-secret",
    )
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
    return asyncio.run(_bench_notifier(port, count, database_url, work))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sink", choices=["auto", "c", "python"], default="auto")
    parser.add_argument("--only", help="comma-separated subset of a,b,sqlite,pg")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else {"a", "b", "sqlite", "pg"}
    count = args.count
    results: dict[str, list[float]] = {}
    with smtp_sink(args.sink) as sink, tempfile.TemporaryDirectory(prefix="nf-bench-") as tmp:
        work = Path(tmp)
        with pg_database() as pg_url:
            runs: list[tuple[str, object]] = []
            if "a" in only:
                runs.append(
                    (
                        "(a) smtplib, new connection per message",
                        lambda: bench_smtplib(sink.port, count),
                    )
                )
            if "b" in only:
                runs.append(
                    (
                        f"(b) aiosmtplib, {POOL} reused connections",
                        lambda: bench_aiosmtplib(sink.port, count),
                    )
                )
            if "sqlite" in only:
                url = f"sqlite:///{work / 'bench.db'}"
                runs.append(
                    ("(c) notifier, SQLite", lambda: bench_notifier(sink.port, count, url, work))
                )
            if "pg" in only and pg_url:
                runs.append(
                    (
                        "(c) notifier, PostgreSQL",
                        lambda u=pg_url: bench_notifier(sink.port, count, u, work),
                    )
                )
            for _ in range(args.repeat):  # interleaved, so drift hits every row alike
                for name, fn in runs:
                    results.setdefault(name, []).append(fn())  # type: ignore[operator]
        rate = {name: count / median(times) for name, times in results.items()}
        rows = []
        a = rate.get("(a) smtplib, new connection per message")
        b = rate.get(f"(b) aiosmtplib, {POOL} reused connections")
        for name, times in results.items():
            r = rate[name]
            spread = f"{count / max(times):,.0f}-{count / min(times):,.0f}"
            rows.append(
                [
                    name,
                    f"{r:,.0f}",
                    spread,
                    f"{r / b:.2f}" if b else "-",
                    f"{r / a:.2f}" if a else "-",
                ]
            )
        print(f"## Delivery: {count:,} messages, median of {args.repeat}\n")
        print(table(["row", "msg/s (median)", "range", "x (b)", "x (a)"], rows))
        c = rate.get("(c) notifier, SQLite")
        if c and a and b:
            ok1, ok2 = c >= 0.8 * b, c >= 2.5 * a
            print(
                f"\ngoal c >= 80% of b on SQLite: {'met' if ok1 else 'NOT met'} ({c / b:.0%});"
                f" c >= 2.5x a: {'met' if ok2 else 'NOT met'} ({c / a:.2f}x)"
            )
        print(f"\n{machine(sink.kind)}")


if __name__ == "__main__":
    main()

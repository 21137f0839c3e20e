"""On time: one reminder due at T for an audience of 1,000, through the real service.

Each run starts `App.run(stop)` (timer + worker, prepare_ahead at its default, so the rows
are rendered and committed ahead of T), with the reminder's `send_at` a few seconds ahead,
and measures against T: the first and the last arrival at the sink (a Python aiosmtpd sink in
another process that timestamps each message), and the moment all 1,000 rows are recorded
`sent` in the ledger (polled from a second connection every 5 ms).

    .venv/bin/python bench/ontime.py [--runs 5] [--audience 1000] [--db sqlite,pg]
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
import math  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from bench._common import (  # noqa: E402
    machine,
    median,
    pg_database,
    smtp_sink,
    table,
    write_audience_csv,
    write_templates,
)

TZ = "Asia/Shanghai"
LEAD_S = 4  # T is this far ahead of the service's start, rounded up to a whole second
BOUND_S = 15.0  # give up waiting this long after T


@dataclass
class Run:
    first: float  # seconds after T
    last: float
    recorded: float
    prepared_before_t: float


class Poller(threading.Thread):
    """Counts `sent` rows from its own connection; notes when all are there."""

    def __init__(self, url: str, want: int, event: str) -> None:
        super().__init__(daemon=True)
        self.url, self.want, self.event = url, want, event
        self.done_at: float | None = None
        self.stop = threading.Event()

    def _count(self) -> object:
        if self.url.startswith("sqlite"):
            conn = sqlite3.connect(f"file:{self.url[len('sqlite:///') :]}?mode=ro", uri=True)
            return lambda: conn.execute(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'sent' AND event_id = ?",
                (self.event,),
            ).fetchone()[0]
        import psycopg

        pg = psycopg.connect(self.url, autocommit=True)
        return lambda: pg.execute(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'sent' AND event_id = %s",
            (self.event,),
        ).fetchone()[0]  # type: ignore[index]

    def run(self) -> None:
        count = None
        while not self.stop.is_set():
            try:
                if count is None:
                    count = self._count()
                if count() >= self.want:  # type: ignore[operator]
                    self.done_at = time.time()
                    return
            except Exception:  # table not there yet
                count = None
            time.sleep(0.005)


async def one_run(
    work: Path, port: int, url: str, audience: int, label: str
) -> tuple[float, float, float | None]:
    """Start the service, wait for T and for every row sent: (T, rows ready at, all sent at)."""
    from notifier.config import HttpSettings, Settings, SmtpSettings
    from notifier.service import App

    tz = ZoneInfo(TZ)
    t = math.ceil(time.time()) + LEAD_S
    local = datetime.fromtimestamp(t, tz)
    schedules, templates = work / "schedules", work / "templates"
    schedules.mkdir(exist_ok=True)
    write_templates(templates)
    (schedules / "ontime.yaml").write_text(
        "audiences:\n"
        f"  bureau: {{csv: {work / 'schedules' / 'audience.csv'}}}\n"
        "events:\n"
        f"  - id: ontime-{label}\n"
        "    title: 局务会议\n"
        f'    date: "{local.date().isoformat()}"\n'
        f'    send_at: "{local:%H:%M:%S}"\n'
        "    workdays: ignore\n"
        "    audience: bureau\n"
        "    reminders: [{on: start}]\n",
        encoding="utf-8",
    )
    settings = Settings(
        _env_file=None,
        schedules_dir=schedules,
        templates_dir=templates,
        database_url=url,
        timezone=TZ,
        smtp=SmtpSettings(host="127.0.0.1", port=port, pool_size=8),
        mail_drop_dir=work / "mail",
        watch=False,
        http=HttpSettings(enabled=False),
        unsubscribe_secret="bench-unsubscribe-secret",
    )
    poller = Poller(url, audience, f"ontime-{label}")
    stop, ready = asyncio.Event(), asyncio.Event()
    async with App(settings) as app:
        service = asyncio.create_task(app.run(stop, ready=ready))
        await ready.wait()
        prepared_at = time.time()
        poller.start()
        await asyncio.to_thread(poller.join, max(0.0, t + BOUND_S - time.time()))
        poller.stop.set()
        stop.set()
        await service
    poller.join()
    return t, prepared_at, poller.done_at


def measure(url: str, audience: int, label: str, work: Path) -> Run:
    log = work / f"arrivals-{label}.txt"
    with smtp_sink("python", log=log) as sink:
        t, prepared_at, done_at = asyncio.run(one_run(work, sink.port, url, audience, label))
    arrivals = sorted(float(line.split()[0]) for line in log.read_text().splitlines())
    if len(arrivals) < audience:
        print(f"warning: {label}: {len(arrivals)} of {audience} arrived", file=sys.stderr)
    return Run(
        first=arrivals[0] - t if arrivals else math.inf,
        last=arrivals[-1] - t if arrivals else math.inf,
        recorded=(done_at - t) if done_at else math.inf,
        prepared_before_t=t - prepared_at,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--audience", type=int, default=1000)
    parser.add_argument("--db", default="sqlite,pg")
    args = parser.parse_args()
    dbs = args.db.split(",")
    results: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="nf-ontime-") as tmp:
        work = Path(tmp)
        write_audience_csv(work / "schedules" / "audience.csv", args.audience)
        for i in range(args.runs):  # a fresh database each run, as at a service's first T
            for db in dbs:
                name = "SQLite" if db == "sqlite" else "PostgreSQL"
                if db == "sqlite":
                    url = f"sqlite:///{work / f'ontime-{i}.db'}"
                    results.setdefault(name, []).append(
                        measure(url, args.audience, f"{db}{i}", work)
                    )
                    continue
                with pg_database() as pg_url:
                    if pg_url:
                        results.setdefault(name, []).append(
                            measure(pg_url, args.audience, f"{db}{i}", work)
                        )

    def ms(v: float) -> str:
        return f"{v * 1000:,.0f}" if math.isfinite(v) else "never"

    rows = []
    for name, runs in results.items():
        for what, attr in (
            ("first message at the sink", "first"),
            ("last message at the sink", "last"),
            (f"all {args.audience:,} recorded sent", "recorded"),
        ):
            vals = [getattr(r, attr) for r in runs]
            rows.append([name, what, ms(median(vals)), ms(max(vals)), ms(min(vals))])
    print(
        f"## On time: one reminder to {args.audience:,} recipients, {args.runs} runs (ms after T)\n"
    )
    print(table(["database", "lateness of", "p50 ms", "max ms", "min ms"], rows))
    for name, runs in results.items():
        first = max(r.first for r in runs)
        rec = max(r.recorded for r in runs)
        print(
            f"\n{name}: goal first <= 50 ms: {'met' if first <= 0.05 else 'NOT met'}"
            f" (max {ms(first)} ms); all recorded sent <= 1.0 s:"
            f" {'met' if rec <= 1.0 else 'NOT met'} (max {ms(rec)} ms); rows were ready"
            f" {min(r.prepared_before_t for r in runs):.1f}-"
            f"{max(r.prepared_before_t for r in runs):.1f} s before T"
        )
    print(f"\n{machine('aiosmtpd sink (Python, bench/_sink.py) with arrival timestamps')}")


if __name__ == "__main__":
    main()

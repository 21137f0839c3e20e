"""Enqueue: an outreach send (`send_now`) to a 100,000-row audience CSV.

Time to render and commit every row, and the peak RSS of the process doing it (each
database runs in a fresh child process, which reads its own VmHWM). The CSV is generated
beforehand and is not timed.

    .venv/bin/python bench/enqueue.py [--rows 100000] [--db sqlite,pg]
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
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench._common import (  # noqa: E402
    machine,
    peak_rss_mib,
    pg_database,
    table,
    write_audience_csv,
    write_outreach_config,
)

TIME_BOUND_S = 300


async def child(work: Path, url: str, rows: int) -> dict[str, float]:
    from notifier.config import HttpSettings, Settings
    from notifier.service import App

    schedules, templates = write_outreach_config(work)
    settings = Settings(
        _env_file=None,
        schedules_dir=schedules,
        templates_dir=templates,
        database_url=url,
        mail_drop_dir=work / "mail",
        watch=False,
        http=HttpSettings(enabled=False),
        unsubscribe_secret="bench-unsubscribe-secret",
    )
    rss_before_open = peak_rss_mib()
    t0 = time.perf_counter()
    async with App(settings) as app:
        opened = time.perf_counter() - t0
        rss_base = peak_rss_mib()
        start = time.perf_counter()
        created, size = await app.outbox.send_now("outreach", now=time.time())
        elapsed = time.perf_counter() - start
    assert created == rows == size, (created, size, rows)
    return {
        "rows": created,
        "seconds": elapsed,
        "open_seconds": opened,
        "rss_start": rss_before_open,
        "rss_base": rss_base,
        "rss_peak": peak_rss_mib(),
        "db_bytes": (work / "enqueue.db").stat().st_size if url.startswith("sqlite") else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite,pg")
    parser.add_argument("--child", nargs=2, metavar=("WORKDIR", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        work, url = Path(args.child[0]), args.child[1]
        print(json.dumps(asyncio.run(child(work, url, args.rows))))
        return
    results: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="nf-enqueue-") as tmp, pg_database() as pg_url:
        work = Path(tmp)
        write_audience_csv(work / "schedules" / "audience.csv", args.rows)
        for db in args.db.split(","):
            if db == "sqlite":
                url, name = f"sqlite:///{work / 'enqueue.db'}", "SQLite"
            elif db == "pg" and pg_url:
                url, name = pg_url, "PostgreSQL"
            else:
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--rows", str(args.rows), "--child", str(work), url],
                capture_output=True,
                text=True,
                timeout=TIME_BOUND_S,
                check=False,
            )
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                raise SystemExit(f"{name}: child failed ({out.returncode})")
            results.append((name, json.loads(out.stdout.strip().splitlines()[-1])))
    rows = [
        [
            name,
            f"{r['rows']:,.0f}",
            f"{r['seconds']:.2f}",
            f"{r['rows'] / r['seconds']:,.0f}",
            f"{r['rss_base']:.0f}",
            f"{r['rss_peak']:.0f}",
        ]
        for name, r in results
    ]
    print(f"## Enqueue: outreach send to a {args.rows:,}-row CSV audience\n")
    print(table(["database", "rows", "seconds", "rows/s", "RSS before MiB", "peak RSS MiB"], rows))
    for name, r in results:
        ok = r["seconds"] <= 10 and r["rss_peak"] <= 300
        print(
            f"\n{name}: goal <= 10 s and <= 300 MB: {'met' if ok else 'NOT met'}"
            f" ({r['seconds']:.1f} s, {r['rss_peak']:.0f} MiB peak)"
        )
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()

"""/metrics on a large ledger: a count per scrape (the old way) against the cached count.

Fills a SQLite ledger with `--rows` rows (`send_now` to an outside audience), then scrapes
`/metrics` over loopback `--scrapes` times in a burst, alternating rounds of the baseline
(`counts_ttl = 0`: every scrape counts the ledger, as before) and the default (one count per
METRICS_COUNTS_TTL seconds). Prints scrape latency and the server time per scrape.

    .venv/bin/python bench/metrics.py [--rows 100000] [--scrapes 50] [--rounds 3]
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
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench._common import (  # noqa: E402
    machine,
    table,
    write_audience_csv,
    write_outreach_config,
)


async def run(work: Path, rows: int, scrapes: int, rounds: int) -> list[list[object]]:
    from aiohttp.test_utils import TestClient, TestServer
    from pydantic import SecretStr

    from notifier.config import HttpSettings, Settings
    from notifier.service import App
    from notifier.web import create_web_app

    schedules, templates = write_outreach_config(work)
    write_audience_csv(work / "schedules" / "audience.csv", rows)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        schedules_dir=schedules,
        templates_dir=templates,
        database_url=f"sqlite:///{work / 'ledger.db'}",
        mail_drop_dir=work / "mail",
        watch=False,
        http=HttpSettings(port=0),
        unsubscribe_secret=SecretStr("bench-unsubscribe-secret"),
    )
    results: dict[str, list[float]] = {"count per scrape (before)": [], "cached (after)": []}
    async with App(settings) as app:
        created, _ = await app.outbox.send_now("outreach", now=time.time())
        assert created == rows
        default_ttl = app.metrics.counts_ttl
        async with TestClient(TestServer(create_web_app(app))) as client:
            for _ in range(rounds):
                for name, ttl in (("count per scrape (before)", 0.0), ("cached (after)", None)):
                    app.metrics.counts_ttl = default_ttl if ttl is None else ttl
                    app.metrics._counts_at = None  # each round starts with one real count
                    for _ in range(scrapes):
                        t0 = time.perf_counter()
                        resp = await client.get("/metrics")
                        await resp.read()
                        results[name].append((time.perf_counter() - t0) * 1000)
    out = []
    for name, ms in results.items():
        ordered = sorted(ms)
        out.append(
            [
                name,
                len(ms),
                f"{statistics.median(ordered):.2f}",
                f"{ordered[int(0.99 * (len(ordered) - 1))]:.2f}",
                f"{sum(ms) / len(ms):.2f}",
            ]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=50, help="per round and variant")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nf-metrics-") as tmp:
        rows = asyncio.run(run(Path(tmp), args.rows, args.scrapes, args.rounds))
    print(f"## /metrics on a {args.rows:,}-row SQLite ledger, bursts of {args.scrapes} scrapes\n")
    print(table(["variant", "scrapes", "p50 ms", "p99 ms", "mean ms"], rows))
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()

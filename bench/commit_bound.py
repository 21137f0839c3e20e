"""What the per-outcome commit costs PostgreSQL delivery: an experiment, not a product row.

The promise of issue 23 (a SIGKILL duplicates at most one message per SMTP connection) makes
each lane wait, before its next final dot, for the commit of its last outcome: a lane's cycle
is one commit plus one dot round trip. This script measures how far that commit keeps
PostgreSQL from SQLite by replacing the commit of `sent` outcomes, in this process only, with
cheaper stand-ins, rows alternated round by round, a fresh database each run:

- SQLite and PostgreSQL as shipped (`Store.record`: on PostgreSQL one `UPDATE ... FROM
  unnest(...)` per group of outcomes, autocommit, `synchronous_commit = off`);
- PostgreSQL, the commit an `INSERT` of the same outcomes into a narrow table with only a
  primary key (the "append outcomes, fold them later" design: no index of `deliveries` is
  touched on the lane's path);
- PostgreSQL, no commit at all (the sent rows stay 'sending'): the bound, what PostgreSQL
  delivery would reach if the commit were free. Not a configuration: it breaks the promise.

    .venv/bin/python bench/commit_bound.py [--count 10000] [--repeat 5]
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.append(os.path.dirname(_HERE))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import psycopg  # noqa: E402

from bench._common import machine, median, pg_database, smtp_sink, table  # noqa: E402
from bench.delivery import bench_notifier  # noqa: E402
from notifier.ledger.models import Outcome, State  # noqa: E402
from notifier.ledger.store import Store  # noqa: E402

SQLITE = "SQLite, as shipped"
PG = "PostgreSQL, as shipped"
PG_INSERT = "PostgreSQL, commit = INSERT into a narrow table (fold later)"
PG_NONE = "PostgreSQL, no commit of sent outcomes (the bound)"

NARROW_TABLE = "CREATE TABLE bench_sent (id bigint PRIMARY KEY, at float8, error text)"
NARROW_INSERT = (
    "INSERT INTO bench_sent (id, at, error)"
    " SELECT * FROM unnest(:ids::bigint[], :ats::float8[], :errors::text[])"
    " ON CONFLICT DO NOTHING"
)


@contextlib.contextmanager
def sent_commits(mode: str) -> Iterator[None]:
    """Replace how `Store.record` commits a group of only-`sent` outcomes, for this block."""
    shipped = Store.record

    async def record(self: Store, outcomes: Sequence[Outcome]) -> None:
        if any(o.state is not State.SENT for o in outcomes):
            await shipped(self, outcomes)
        elif mode == "insert":
            await self.db.execute(
                NARROW_INSERT,
                {
                    "ids": [o.delivery_id for o in outcomes],
                    "ats": [o.at for o in outcomes],
                    "errors": [o.error for o in outcomes],
                },
                durable=False,
            )

    Store.record = record  # type: ignore[method-assign]
    try:
        yield
    finally:
        Store.record = shipped  # type: ignore[method-assign]


def on_fresh_pg(port: int, count: int, work: Path, mode: str | None) -> float:
    with pg_database() as url:
        if url is None:
            raise RuntimeError("PostgreSQL not available")
        if mode is None:
            return bench_notifier(port, count, url, work)
        if mode == "insert":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(NARROW_TABLE)
        with sent_commits(mode):
            return bench_notifier(port, count, url, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    count = args.count
    results: dict[str, list[float]] = {}
    with smtp_sink("auto") as sink, tempfile.TemporaryDirectory(prefix="nf-bound-") as tmp:
        work, port = Path(tmp), sink.port
        runs: list[tuple[str, Callable[[int], float]]] = [
            (SQLITE, lambda i: bench_notifier(port, count, f"sqlite:///{work}/r{i}.db", work)),
            (PG, lambda i: on_fresh_pg(port, count, work, None)),
            (PG_INSERT, lambda i: on_fresh_pg(port, count, work, "insert")),
            (PG_NONE, lambda i: on_fresh_pg(port, count, work, "none")),
        ]
        for i in range(args.repeat):
            for name, fn in runs:
                results.setdefault(name, []).append(fn(i))
                print(
                    f"round {i + 1}: {name}: {count / results[name][-1]:,.0f} msg/s",
                    file=sys.stderr,
                    flush=True,
                )
    rows = []
    for name, times in results.items():
        by_sqlite = [s / t for t, s in zip(times, results[SQLITE], strict=True)]
        rows.append(
            [
                name,
                f"{count / median(times):,.0f}",
                f"{count / max(times):,.0f}-{count / min(times):,.0f}",
                f"{median(by_sqlite):.2f} ({min(by_sqlite):.2f}-{max(by_sqlite):.2f})",
            ]
        )
    print(f"## The commit's cost: {count:,} messages from a filled ledger, {args.repeat} rounds\n")
    print(table(["row", "msg/s (median)", "range", "x SQLite, per round: median (range)"], rows))
    print(f"\n{machine(sink.kind)}")


if __name__ == "__main__":
    main()

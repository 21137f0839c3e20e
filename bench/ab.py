"""A/B: a benchmark script on an older revision's code and on the work tree's, interleaved.

On this shared 2-core VM single numbers move by +-20% within the hour, so a before/after
comparison is only worth something when both sides run in the same minutes. This exports the
`notifier` package of `--base` (git archive) to a temp dir, then runs the given bench script
`--pairs` times on each side, alternating which goes first (base, work tree; work tree, base;
...); the base runs with that dir first on PYTHONPATH (`--head REV` measures another revision
instead of the work tree, the same way) (the bench scripts start `notifier run`
with the caller's environment). It reads the markdown table rows named by `--row` and the
`ratio ...: N%` lines from each run's output and prints every run and the medians.

    .venv/bin/python bench/ab.py --base aa26d7f --pairs 4 -- bench/webhooks.py --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A failed run (a database restarted by someone else's test, say) is run again this many times.
RETRIES = 2


def export(revision: str, into: Path) -> str:
    """The `notifier` package of `revision` under `into`; returns the full commit id."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "notifier"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit


def numbers(output: str, rows: list[str]) -> dict[str, float]:
    """`<row> <column>` -> value for the named table rows, and `ratio <what>` -> percent."""
    found: dict[str, float] = {}
    header: list[str] = []
    for line in output.splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] in rows and header:
                for column, cell in zip(header[1:], cells[1:], strict=False):
                    try:
                        found[f"{cells[0]} {column}"] = float(cell.replace(",", ""))
                    except ValueError:
                        pass
            elif cells[0] not in rows:
                header = cells
        m = re.match(r"ratio (.+?): (\d+)%", line)
        if m:
            found[f"ratio {m.group(1)}"] = float(m.group(2))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--head", help="git revision to measure (default: the work tree)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--row", action="append", help="table rows to read (default: both)")
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- bench/x.py [its options]")
    args = parser.parse_args()
    script = [a for a in args.script if a != "--"]
    if not script:
        parser.error("name the bench script after --")
    rows = args.row or ["bare", "notifier"]
    results: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
    with (
        tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp,
        tempfile.TemporaryDirectory(prefix="bench-ab-head-") as tmp_head,
    ):
        commit = export(args.base, Path(tmp))
        head_path = [str(ROOT)]
        head_name = "work tree"
        if args.head:
            head_name = export(args.head, Path(tmp_head))[:7]
            head_path.insert(0, tmp_head)
        envs = {
            "base": {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, str(ROOT)])},
            "head": {**os.environ, "PYTHONPATH": os.pathsep.join(head_path)},
        }
        for i in range(args.pairs):
            for side in ("base", "head") if i % 2 == 0 else ("head", "base"):
                for attempt in range(1 + RETRIES):
                    run = subprocess.run(
                        [sys.executable, *script],
                        cwd=ROOT,
                        env=envs[side],
                        capture_output=True,
                        text=True,
                    )
                    if run.returncode == 0:
                        break
                    # On a shared machine someone may restart the PostgreSQL server mid-run
                    # (tests/test_faults_postgres.py does): that run says nothing; run it again.
                    print(
                        f"{side} run {i + 1} failed (try {attempt + 1}):\n{run.stderr[-2000:]}",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    raise SystemExit(f"{side} run {i + 1} failed:\n{run.stdout}\n{run.stderr}")
                got = numbers(run.stdout, rows)
                results[side].append(got)
                print(f"pair {i + 1} {side}: {got}", file=sys.stderr, flush=True)
    keys = sorted({k for side in results.values() for r in side for k in r})
    print(f"## A/B: {' '.join(script)}; base {commit[:7]}, head = {head_name}\n")
    print(f"{args.pairs} runs each, interleaved (first of each pair alternating); medians\n")
    print("| number | base (median) | head (median) | head/base | base runs | head runs |")
    print("|---|---|---|---|---|---|")
    for key in keys:
        base = [r[key] for r in results["base"] if key in r]
        head = [r[key] for r in results["head"] if key in r]
        if not base or not head:
            continue
        mb, mh = statistics.median(base), statistics.median(head)
        change = f"{mh / mb:.3f}" if mb else "n/a"
        print(
            f"| {key} | {mb:,.2f} | {mh:,.2f} | {change} "
            f"| {', '.join(f'{v:,.6g}' for v in base)} | {', '.join(f'{v:,.6g}' for v in head)} |"
        )


if __name__ == "__main__":
    main()

"""Run the four benchmarks in sequence, each in its own process with a time bound, and write
their tables to BENCHMARKS.md with the date and the machine (`make bench`).

    .venv/bin/python bench/run_all.py [--only delivery,ontime,...] [--no-write]
"""

from __future__ import annotations

import os
import sys

# bench/calendar.py would shadow the standard `calendar` module: keep bench/ off sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.append(os.path.dirname(_HERE))  # for `bench._common`; PYTHONPATH may override notifier

import argparse  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402

from bench._common import BENCH, ROOT, machine  # noqa: E402

# (script, time bound in seconds): generous, about 3x what a run takes on the 2-core machine.
SUITE = (
    ("delivery", 1800),
    ("ontime", 300),
    ("enqueue", 300),
    ("calendar", 600),
    ("webhooks", 300),
    ("chat", 600),
)
OUTPUT = ROOT / "BENCHMARKS.md"
# Each script's output starts with its `## ` heading: how a rerun of one replaces its section.
TITLES = {
    "delivery": "## Delivery",
    "ontime": "## On time",
    "enqueue": "## Enqueue",
    "calendar": "## Calendar",
    "webhooks": "## Webhooks",
    "chat": "## Chat",
}

HEADER = """# Benchmarks

Numbers, not pass/fail tests (issue 6). Regenerate with `make bench` (about 5-10 minutes);
each script also runs alone, e.g. `.venv/bin/python bench/delivery.py --help`. The machine is
noisy (about +-20% between runs): the scripts interleave their rows and report medians.

Run {date}; {machine}.
"""


def write(sections: list[tuple[str, str]]) -> None:
    """Replace the sections just run; keep the others, and the notes below the marker."""
    marker = "<!-- end of generated tables -->"
    old = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
    generated, _, notes = old.partition(marker)
    kept: dict[str, str] = {}
    for chunk in re.split(r"(?m)^(?=## )", generated):
        for name, title in TITLES.items():
            if chunk.startswith(title):
                kept[name] = chunk.strip()
    kept.update(dict(sections))
    head = HEADER.format(
        date=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        machine=machine().removeprefix("machine: "),
    )
    body = "\n\n".join(kept[name] for name, _ in SUITE if name in kept)
    OUTPUT.write_text(f"{head}\n{body}\n\n{marker}{notes}", encoding="utf-8")
    print(f"wrote {OUTPUT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated subset of the suite")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {name for name, _ in SUITE}
    sections: list[tuple[str, str]] = []
    failed = []
    for name, bound in SUITE:
        if name not in wanted:
            continue
        print(f"--- {name} (bound {bound} s)", flush=True)
        start = time.monotonic()
        try:
            out = subprocess.run(
                [sys.executable, str(BENCH / f"{name}.py")],
                capture_output=True,
                text=True,
                timeout=bound,
                check=False,
                cwd=ROOT,
            )
            text, code = out.stdout.strip(), out.returncode
            if code != 0:
                text += f"\n\n(exit {code})\n```\n{out.stderr.strip()[-3000:]}\n```"
        except subprocess.TimeoutExpired:
            text, code = f"{TITLES[name]}\n\nstopped after the {bound} s bound", -1
        if code != 0:
            failed.append(name)
        print(text, f"\n({time.monotonic() - start:.0f} s)\n", flush=True)
        sections.append((name, text))
    if not args.no_write and sections:
        write(sections)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

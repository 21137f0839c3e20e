"""Run the four benchmarks in sequence, each in its own process with a time bound, and write
their tables to BENCHMARKS.md with the date and the machine (`make bench`).

    .venv/bin/python bench/run_all.py [--only delivery,ontime,enqueue,calendar] [--no-write]
"""

from __future__ import annotations

import os
import sys

# bench/calendar.py would shadow the standard `calendar` module: keep bench/ off sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.append(os.path.dirname(_HERE))  # for `bench._common`; PYTHONPATH may override notifier

import argparse  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402

from bench._common import BENCH, ROOT, machine  # noqa: E402

# (script, time bound in seconds): generous, about 3x what a run takes on the 2-core machine.
SUITE = (
    ("delivery", 900),
    ("ontime", 300),
    ("enqueue", 300),
    ("calendar", 600),
)
OUTPUT = ROOT / "BENCHMARKS.md"

HEADER = """# Benchmarks

Numbers, not pass/fail tests (issue 6). Regenerate with `make bench` (about 5-10 minutes);
each script also runs alone, e.g. `.venv/bin/python bench/delivery.py --help`. The machine is
noisy (about +-20% between runs): the scripts interleave their rows and report medians.

Run {date}; {machine}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated subset of the suite")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {name for name, _ in SUITE}
    sections: list[str] = []
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
            text, code = f"## {name}\n\nstopped after the {bound} s bound", -1
        if code != 0:
            failed.append(name)
        print(text, f"\n({time.monotonic() - start:.0f} s)\n", flush=True)
        sections.append(text)
    if not args.no_write and sections:
        head = HEADER.format(
            date=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            machine=machine().removeprefix("machine: "),
        )
        body = "\n\n".join(sections)
        notes = ""
        if OUTPUT.exists():  # keep the hand-written analysis below the generated part
            old = OUTPUT.read_text(encoding="utf-8")
            marker = "<!-- end of generated tables -->"
            if marker in old:
                notes = old.split(marker, 1)[1]
        OUTPUT.write_text(
            f"{head}\n{body}\n\n<!-- end of generated tables -->{notes}", encoding="utf-8"
        )
        print(f"wrote {OUTPUT}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

"""Calendar: `notifier check` and `notifier upcoming` (one year, --json) on generated schedules.

100, 1,000 and 10,000 events, a mix of rule types (annual dates, annual spans, whole months,
lunar dates, RRULEs, one-off dates), each with 2-3 reminders including 个工作日 offsets. The
CLI runs as a subprocess; wall time and peak RSS come from `os.wait4` (the child's rusage).

    .venv/bin/python bench/calendar.py [--sizes 100,1000,10000] [--repeat 3]
"""

from __future__ import annotations

import os
import sys

# This file's name shadows the standard `calendar` module: keep bench/ off sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.append(os.path.dirname(_HERE))  # for `bench._common`; PYTHONPATH may override notifier

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import date, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

from bench._common import machine, median, table, write_templates  # noqa: E402

NOTIFIER = Path(sys.executable).parent / "notifier"
EVENTS_PER_FILE = 1000
TIME_BOUND_S = 300
DAYS = 365

_RRULES = (
    "FREQ=YEARLY;BYMONTH={m};BYDAY=2SA",
    "FREQ=MONTHLY;BYDAY=1MO",
    "FREQ=YEARLY;BYMONTH={m};BYMONTHDAY=-1",
)


def event_yaml(i: int, today: date) -> str:
    m, d = i % 12 + 1, i % 28 + 1
    kind = i % 6
    head = f"  - id: ev-{i:05d}\n    title: 事件{i}\n"
    if kind == 0:
        rule = f'    date: "{m:02d}-{d:02d}"\n'
        rems = "[{before: 10 days}, {before: 3个工作日}, {on: start}]"
    elif kind == 1:
        end = min(d + 6, 28)
        rule = f'    date: "{m:02d}-{d:02d}..{m:02d}-{end:02d}"\n'
        rems = "[{before: 2周}, {on: start}, {after: 1个工作日}]"
    elif kind == 2:
        rule = f"    month: {m}\n"
        rems = "[{before: 10 days}, {on: start, workdays: next}]"
    elif kind == 3:
        rule = f'    lunar: "{m:02d}-{i % 29 + 1:02d}"\n'
        rems = "[{before: 5个工作日}, {on: start}]"
    elif kind == 4:
        rule = f'    rrule: "{_RRULES[i // 6 % 3].format(m=m)}"\n'
        rems = "[{before: 2个工作日}, {on: start}]"
    else:
        day = today + timedelta(days=i % DAYS)
        rule = f'    date: "{day.isoformat()}"\n'
        rems = "[{before: 3 days}, {before: 1个工作日}, {on: start}]"
    return head + rule + f"    reminders: {rems}\n"


def write_schedule(directory: Path, events: int, today: date) -> None:
    directory.mkdir(parents=True)
    (directory / "audiences.yaml").write_text(
        "audiences:\n  staff:\n    - {email: fazhi@fao.example.com, name: 政策法规处}\n"
        "    - {email: office@fao.example.com, name: 办公室}\n",
        encoding="utf-8",
    )
    for start in range(0, events, EVENTS_PER_FILE):
        body = "".join(
            event_yaml(i, today) for i in range(start, min(events, start + EVENTS_PER_FILE))
        )
        (directory / f"events-{start // EVENTS_PER_FILE:03d}.yaml").write_text(
            'defaults:\n  send_at: "09:00"\n  workdays: previous\n'
            "  audience: staff\n  template: reminder\nevents:\n" + body,
            encoding="utf-8",
        )


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one CLI run."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([str(NOTIFIER), *args], env=env, stdout=out, stderr=subprocess.PIPE)
        deadline = start + TIME_BOUND_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                raise SystemExit(f"notifier {args[0]} took over {TIME_BOUND_S} s")
            time.sleep(0.002)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"notifier {' '.join(args)} failed:\n{err[-2000:]}")
        out.seek(0)
        return wall, usage.ru_maxrss / 1024, out.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    today = date.today()
    until = today + timedelta(days=DAYS)
    rows = []
    times: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="nf-calendar-") as tmp:
        work = Path(tmp)
        templates = write_templates(work / "templates")
        # The floor: a CLI command that loads no schedule.
        env = {**os.environ, "NOTIFIER_TEMPLATES_DIR": str(templates)}
        walls = [run_cli(["--help"], env)[0] for _ in range(args.repeat)]
        rows.append(["(startup: notifier --help)", "-", "-", f"{median(walls):.2f}", "-", "-"])
        for size in sizes:
            sched = work / f"schedules-{size}"
            write_schedule(sched, size, today)
            env = {
                **os.environ,
                "NOTIFIER_SCHEDULES_DIR": str(sched),
                "NOTIFIER_TEMPLATES_DIR": str(templates),
            }
            for name, cli in (
                ("check", ["check"]),
                (
                    "upcoming 1 year --json",
                    ["upcoming", "--from", today.isoformat(), "--to", until.isoformat(), "--json"],
                ),
            ):
                results = [run_cli(cli, env) for _ in range(args.repeat)]
                wall = median([r[0] for r in results])
                rss = max(r[1] for r in results)
                sends = len(json.loads(results[0][2])) if name.startswith("upcoming") else None
                times[(name, size)] = wall
                rows.append(
                    [
                        name,
                        f"{size:,}",
                        f"{sends:,}" if sends is not None else "-",
                        f"{wall:.2f}",
                        f"{rss:.0f}",
                        f"{wall / times[(name, sizes[0])]:.1f}x",
                    ]
                )
    print(f"## Calendar: one year from {today}, median of {args.repeat} runs\n")
    print(
        table(
            ["command", "events", "planned sends", "seconds", "peak RSS MiB", f"x ({sizes[0]:,})"],
            rows,
        )
    )
    if 1000 in sizes and 10000 in sizes:
        for name in ("check", "upcoming 1 year --json"):
            ratio = times[(name, 10000)] / times[(name, 1000)]
            ok = ratio <= 12 and times[(name, 10000)] <= 5
            print(
                f"\n{name}: 10,000 / 1,000 events = {ratio:.1f}x, {times[(name, 10000)]:.1f} s"
                f" at 10,000: goal (<= 12x, a few seconds) {'met' if ok else 'NOT met'}"
            )
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()

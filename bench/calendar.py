"""Calendar: `notifier check` and `notifier upcoming` (one year, --json) on generated schedules.

100, 1,000 and 10,000 events, a mix of rule types (annual dates, annual spans, whole months,
lunar dates, RRULEs, one-off dates), each with 2-3 reminders including 个工作日 offsets. The
CLI runs as a subprocess; wall time and peak RSS come from `os.wait4` (the child's rusage).

    .venv/bin/python bench/calendar.py [--sizes 100,1000,10000] [--repeat 3] [--campaigns]

`--campaigns` adds the campaign forms: `every: workday` on the annual spans and `every: week`
on the whole months (a third of the events). `--compare SRC` measures `check` on 10,000
events three ways, interleaved run by run: the package in SRC (e.g. the previous release,
`git archive <commit> notifier | tar -x -C SRC`) on the classic calendar, this package on the
classic calendar, and this package with the campaign forms.
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


def event_yaml(i: int, today: date, campaigns: bool = False) -> str:
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
        if campaigns:
            rems = "[{before: 2周}, {every: workday}, {after: 1个工作日}]"
    elif kind == 2:
        rule = f"    month: {m}\n"
        rems = "[{before: 10 days}, {on: start, workdays: next}]"
        if campaigns:
            rems = "[{before: 10 days}, {every: 每周, workdays: next}]"
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


def write_schedule(directory: Path, events: int, today: date, campaigns: bool = False) -> None:
    directory.mkdir(parents=True)
    (directory / "audiences.yaml").write_text(
        "audiences:\n  staff:\n    - {email: fazhi@fao.example.com, name: 政策法规处}\n"
        "    - {email: office@fao.example.com, name: 办公室}\n",
        encoding="utf-8",
    )
    for start in range(0, events, EVENTS_PER_FILE):
        body = "".join(
            event_yaml(i, today, campaigns)
            for i in range(start, min(events, start + EVENTS_PER_FILE))
        )
        (directory / f"events-{start // EVENTS_PER_FILE:03d}.yaml").write_text(
            'defaults:\n  send_at: "09:00"\n  workdays: previous\n'
            "  audience: staff\n  template: reminder\nevents:\n" + body,
            encoding="utf-8",
        )


def run_cli(
    args: list[str], env: dict[str, str], cpu: list[float] | None = None
) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one CLI run; its CPU seconds go to `cpu`."""
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
        if cpu is not None:
            cpu.append(usage.ru_utime + usage.ru_stime)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"notifier {' '.join(args)} failed:\n{err[-2000:]}")
        out.seek(0)
        return wall, usage.ru_maxrss / 1024, out.read().decode()


def compare(base_src: Path, repeat: int, size: int = 10000) -> None:
    """`check` on `size` events: SRC's package vs this one, classic and campaign forms."""
    today = date.today()
    variants = {
        "check, classic forms, previous code (SRC)": (False, str(base_src)),
        "check, classic forms, this code": (False, None),
        "check, with every: forms, this code": (True, None),
    }
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    sends: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="nf-calendar-") as tmp:
        work = Path(tmp)
        templates = write_templates(work / "templates")
        scheds = {}
        for campaigns in (False, True):
            scheds[campaigns] = work / f"schedules-{int(campaigns)}"
            write_schedule(scheds[campaigns], size, today, campaigns)
        for _ in range(repeat):
            for name, (campaigns, src) in variants.items():
                env = {
                    **os.environ,
                    "NOTIFIER_SCHEDULES_DIR": str(scheds[campaigns]),
                    "NOTIFIER_TEMPLATES_DIR": str(templates),
                }
                if src:
                    env["PYTHONPATH"] = src
                walls[name].append(run_cli(["check"], env, cpus[name])[0])
        until = today + timedelta(days=DAYS)
        for name, (campaigns, src) in variants.items():
            if src:
                continue
            env = {
                **os.environ,
                "NOTIFIER_SCHEDULES_DIR": str(scheds[campaigns]),
                "NOTIFIER_TEMPLATES_DIR": str(templates),
            }
            out = run_cli(
                ["upcoming", "--from", today.isoformat(), "--to", until.isoformat(), "--json"], env
            )[2]
            sends[name] = len(json.loads(out))
    print(f"## Calendar with campaigns: `check` on {size:,} events, median of {repeat} runs\n")
    first = next(iter(variants))
    base, base_cpu = median(walls[first]), median(cpus[first])
    rows = [
        [
            name,
            f"{sends[name]:,}" if name in sends else "-",
            f"{median(w):.2f}",
            f"{min(w):.2f}-{max(w):.2f}",
            f"{median(cpus[name]):.2f}",
            f"{median(w) / base:.2f}x",
            f"{median(cpus[name]) / base_cpu:.2f}x",
        ]
        for name, w in walls.items()
    ]
    headers = ["variant", "sends in a year", "wall s", "wall range", "CPU s", "x wall", "x CPU"]
    print(table(headers, rows))
    print(f"\n{machine()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--campaigns", action="store_true", help="add the every: forms")
    parser.add_argument("--compare", type=Path, metavar="SRC", help="see the module docstring")
    args = parser.parse_args()
    if args.compare is not None:
        compare(args.compare, args.repeat)
        return
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
            write_schedule(sched, size, today, args.campaigns)
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

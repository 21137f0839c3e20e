"""Outreach with the office's own files (issue 20): `check` on a 100,000-row audience as UTF-8
CSV, GBK CSV and XLSX (time and peak RSS of the process loading the schedule).

Each measurement runs in a fresh child process, which reports its own VmHWM; "baseline" is
the same child with notifier imported and nothing read. The files are generated beforehand
and are not timed.

    .venv/bin/python bench/outreach.py [--rows 100000]
"""

from __future__ import annotations

import os
import sys

# bench/calendar.py would shadow the standard `calendar` module: keep bench/ off sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.append(os.path.dirname(_HERE))  # for `bench._common`; PYTHONPATH may override notifier

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench._common import machine, peak_rss_mib, table  # noqa: E402

TIME_BOUND_S = 600
HEADERS = ["单位名称", "联系人", "邮箱", "电话", "地址"]


def row(i: int) -> list[object]:
    return [
        f"星海贸易{i}号有限公司",
        f"联系人{i}",
        f"biz{i:06d}@trade{i % 97}.example.com",
        13800000000 + i,
        f"厦门市思明区某路{i % 500}号",
    ]


def write_csv(path: Path, rows: int, encoding: str) -> None:
    with path.open("w", encoding=encoding, newline="") as out:
        out.write(",".join(HEADERS) + "\r\n")
        for i in range(rows):
            out.write(",".join(str(v) for v in row(i)) + "\r\n")


def write_xlsx(path: Path, rows: int) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("企业")
    sheet.append(HEADERS)
    for i in range(rows):
        sheet.append(row(i))
    workbook.save(path)


def child_check(directory: Path) -> dict[str, float]:
    from notifier.schedule.load import load_schedule

    start = time.perf_counter()
    schedule = load_schedule(directory) if directory.name != "baseline" else None
    seconds = time.perf_counter() - start
    size = schedule.audiences["enterprises"].size if schedule else 0
    return {"seconds": seconds, "rss": peak_rss_mib(), "size": size}


def run_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=TIME_BOUND_S,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_check(work: Path, rows: int) -> str:
    cases = {
        "baseline (nothing read)": None,
        "CSV, UTF-8": ("a.csv", "csv", "utf-8"),
        "CSV, GBK (as Excel saves it)": ("a.csv", "csv", "gbk"),
        "XLSX (python-calamine)": ("a.xlsx", "xlsx", None),
    }
    lines = []
    for label, case in cases.items():
        directory = work / (
            "baseline" if case is None else label.split(",")[0].split()[0] + (case[2] or "")
        )
        directory.mkdir(exist_ok=True)
        size_mib = 0.0
        if case is not None:
            name, key, encoding = case
            path = directory / name
            if encoding is None:
                write_xlsx(path, rows)
            else:
                write_csv(path, rows, encoding)
            size_mib = path.stat().st_size / 2**20
            (directory / "main.yaml").write_text(
                f"audiences:\n  enterprises: {{{key}: {name}}}\nevents: []\n", encoding="utf-8"
            )
        got = run_child("check", str(directory))
        lines.append(
            [
                label,
                f"{size_mib:.1f}",
                int(got["size"]),
                f"{got['seconds']:.2f}",
                f"{got['rss']:.0f}",
            ]
        )
    return table(["audience file", "file MiB", "recipients", "load s", "peak RSS MiB"], lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "check":
            print(json.dumps(child_check(Path(rest[0]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("## Outreach files (issue 20)\n")
        print(machine())
        print(f"\n`check` (schedule load) on a {args.rows:,}-row audience:\n")
        print(bench_check(work, args.rows))


if __name__ == "__main__":
    main()

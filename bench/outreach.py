"""Outreach with the office's own files (issue 20): `check` on a 100,000-row audience as UTF-8
CSV, GBK CSV and XLSX (time and peak RSS of the process loading the schedule); the delivery
export of 100,000 ledger rows as XLSX and CSV (time, peak RSS, file size).

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
import asyncio  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

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


def settings_for(work: Path, url: str) -> Any:
    from bench._common import write_templates
    from notifier.config import Settings

    schedules = work / "schedules"
    schedules.mkdir(exist_ok=True)
    (schedules / "main.yaml").write_text("events: []\n", encoding="utf-8")
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        schedules_dir=schedules,
        templates_dir=write_templates(work / "templates"),
        database_url=url,
        mail_from="notifier@fao.example.com",
        watch=False,
    )


async def child_fill(work: Path, url: str, rows: int) -> dict[str, float]:
    """Ledger rows as a send to `rows` enterprises leaves them (a 2 KB message each)."""
    from notifier.compose.message import encode_words
    from notifier.ledger.models import NewDelivery, State
    from notifier.service import App

    body = "尊敬的企业：兹定于……" * 60
    async with App(settings_for(work, url)) as app:
        for start in range(0, rows, 5000):
            batch = [
                NewDelivery(
                    key=f"outreach/2027-03-18/invite/biz{i}@trade.example.com/email",
                    event_id="outreach",
                    occurrence="2027-03-18",
                    reminder_id="invite",
                    recipient=f"biz{i}@trade.example.com",
                    channel="email",
                    due_at=1796000000.0 + i,
                    message_id=f"<{i:032x}@fao.example.com>",
                    subject="邀请函",
                    message=(
                        f"To: {encode_words(f'星海贸易{i}号有限公司')} <biz{i}@trade.example.com>"
                        f"\r\nSubject: x\r\n\r\n{body}\r\n"
                    ),
                    state=State.SENT if i % 10 else State.DEAD,
                    last_error=None if i % 10 else "550 5.1.1 mailbox unavailable",
                )
                for i in range(start, min(rows, start + 5000))
            ]
            await app.store.enqueue(batch, now=1796000000.0)
    return {"rows": rows}


async def child_export(work: Path, url: str, fmt: str) -> dict[str, float]:
    from notifier.service import App

    out = work / f"record.{fmt}"
    async with App(settings_for(work, url)) as app:
        start = time.perf_counter()
        record = await app.delivery_record(fmt)  # type: ignore[arg-type]
        first = None
        with out.open("wb") as handle:
            async for chunk in record.chunks():
                if first is None:
                    first = time.perf_counter() - start
                handle.write(chunk)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "first": first or 0.0,
        "rss": peak_rss_mib(),
        "rows": record.rows,
        "mib": out.stat().st_size / 2**20,
    }


def bench_export(work: Path, rows: int) -> str:
    url = f"sqlite:///{work / 'export.db'}"
    run_child("fill", str(work), url, str(rows))
    lines = []
    for fmt in ("csv", "xlsx"):
        got = run_child("export", str(work), url, fmt)
        lines.append(
            [
                fmt.upper(),
                int(got["rows"]),
                f"{got['seconds']:.1f}",
                f"{got['first']:.2f}",
                f"{got['rss']:.0f}",
                f"{got['mib']:.1f}",
            ]
        )
    return table(["format", "rows", "export s", "first bytes s", "peak RSS MiB", "file MiB"], lines)


async def child_dbsize(work: Path, url: str, recipients: int, mib: int) -> dict[str, float]:
    """An outreach send with a `mib` MiB PDF to `recipients` enterprises: rows made and
    committed (not sent), then the database's size; one row assembled as the worker would."""
    from notifier.service import App

    settings = settings_for(work, url)
    schedules = settings.schedules_dir
    (schedules / "files").mkdir(exist_ok=True)
    (schedules / "files" / "邀请函.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(mib * 2**20))
    with (schedules / "list.csv").open("w", encoding="utf-8") as out:
        out.write("邮箱,单位名称\n")
        for i in range(recipients):
            out.write(f"biz{i}@trade{i % 97}.example.com,星海贸易{i}号有限公司\n")
    (schedules / "main.yaml").write_text(
        "audiences:\n  enterprises: {csv: list.csv, external: true}\n"
        "events:\n  - id: apec\n    title: 说明会\n    date: '2027-03-18'\n"
        "    audience: enterprises\n    attachments: [files/邀请函.pdf]\n"
        "    reminders: [{before: 7 days, id: invite}]\n",
        encoding="utf-8",
    )
    async with App(settings) as app:
        start = time.perf_counter()
        created, _ = await app.send_now("apec", reminder_id="invite")
        enqueue = time.perf_counter() - start
        [row] = await app.store.list_deliveries(limit=1)
        start = time.perf_counter()
        full = await app.store.assembled(row)
        first_assembly = time.perf_counter() - start
        start = time.perf_counter()
        await app.store.assembled(row)
        cached_assembly = time.perf_counter() - start
        if url.startswith("sqlite"):
            await app.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = await asyncio.to_thread(os.path.getsize, url.removeprefix("sqlite:///"))
        else:
            got = await app.store.db.fetchone("SELECT pg_database_size(current_database())")
            assert got is not None
            size = int(got[0])
    return {
        "rows": created,
        "db_mib": size / 2**20,
        "row_chars": len(row.message),
        "sent_mib": len(full.message) / 2**20,
        "enqueue": enqueue,
        "assemble_ms": first_assembly * 1000,
        "cached_ms": cached_assembly * 1000,
        "rss": peak_rss_mib(),
    }


def bench_dbsize(work: Path, recipients: int, mib: int) -> str:
    from bench._common import pg_database

    lines = []
    with pg_database() as pg_url:
        urls = [("SQLite", f"sqlite:///{work / 'size.db'}")]
        if pg_url:
            urls.append(("PostgreSQL", pg_url))
        for name, url in urls:
            sub = work / name
            sub.mkdir(exist_ok=True)
            got = run_child("dbsize", str(sub), url, str(recipients), str(mib))
            lines.append(
                [
                    name,
                    int(got["rows"]),
                    f"{got['db_mib']:.1f}",
                    int(got["row_chars"]),
                    f"{got['sent_mib']:.2f}",
                    f"{got['enqueue']:.1f}",
                    f"{got['assemble_ms']:.0f} / {got['cached_ms']:.0f}",
                    f"{got['rss']:.0f}",
                ]
            )
    copies = recipients * mib * 4 / 3
    return (
        table(
            [
                "database",
                "rows",
                "DB MiB",
                "row message chars",
                "message as sent MiB",
                "enqueue s",
                "assemble ms (first / cached)",
                "peak RSS MiB",
            ],
            lines,
        )
        + f"\n\nA copy per row would be {recipients:,} x {mib} MiB x 4/3 (base64) ="
        f" {copies / 1024:.1f} GiB."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child", nargs="+")
    parser.add_argument("--only", default="check,export,dbsize", help="check,export,dbsize")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "check":
            print(json.dumps(child_check(Path(rest[0]))))
        elif kind == "fill":
            print(json.dumps(asyncio.run(child_fill(Path(rest[0]), rest[1], int(rest[2])))))
        elif kind == "dbsize":
            result = child_dbsize(Path(rest[0]), rest[1], int(rest[2]), int(rest[3]))
            print(json.dumps(asyncio.run(result)))
        elif kind == "export":
            print(json.dumps(asyncio.run(child_export(Path(rest[0]), rest[1], rest[2]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("## Outreach files (issue 20)\n")
        print(machine())
        print(f"\n`check` (schedule load) on a {args.rows:,}-row audience:\n")
        if "check" in args.only:
            print(bench_check(work, args.rows))
        if "dbsize" in args.only:
            print("\nLedger size: an outreach send of a 2 MiB PDF to 5,000 enterprises:\n")
            print(bench_dbsize(work, 5000, 2))
        if "export" in args.only:
            print(f"\nExport of {args.rows:,} ledger rows (SQLite), written to a file:\n")
            print(bench_export(work, args.rows))


if __name__ == "__main__":
    main()

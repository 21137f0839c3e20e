"""Console: the server time of each section with 1,000 events and 100,000 ledger rows.

Builds a throwaway config (1,000 events: annual dates, spans, whole months, lunar dates and
quarterly RRULEs, three reminders each) and a SQLite ledger of 100,000 rows (sent, failed,
dead, pending over the past year, 1,000 recipients), opens the real `App` and its aiohttp
application on a loopback port, signs in through the form, and requests each section in
turn, round-robin, `--rounds` times over one keep-alive connection. Prints p50/p95 per
section in ms; `/healthz` (no database, no template) is the baseline measured in the same run.
Loopback only; everything lives in a temporary directory removed at exit.

    .venv/bin/python bench/console.py [--events 1000] [--rows 100000] [--rounds 40]
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
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

import aiohttp  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench._common import BODY, SUBJECT, machine, table  # noqa: E402
from notifier.config import HttpSettings, Settings  # noqa: E402
from notifier.ledger.console import ConsoleStore, DeliveryFilter  # noqa: E402
from notifier.ledger.models import NewDelivery, State  # noqa: E402
from notifier.service import App  # noqa: E402
from notifier.web import bound_port, start_http  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 4, 1, 9, 0, tzinfo=TZ).timestamp()
TOKEN = "bench-admin-token"
CHUNK = 5000
# p95 goal per section on the 2-core machine (the figure).
GOAL_MS = 200.0


def schedule_yaml(events: int) -> str:
    lines = [
        "audiences:",
        "  staff:",
        "    - {email: fazhi@bench.example.com, name: 法治处}",
        "    - {email: office@bench.example.com, name: 办公室}",
        "events:",
    ]
    for i in range(events):
        month, day = i % 12 + 1, i % 27 + 1
        kind = i % 5
        if kind == 0:
            when = f'date: "{month:02d}-{day:02d}"'
        elif kind == 1:
            when = f'date: "{month:02d}-{day:02d}..{month:02d}-{day + 1:02d}"'
        elif kind == 2:
            when = f"month: {month}"
        elif kind == 3:
            when = f'lunar: "{month:02d}-{day:02d}"'
        else:
            when = 'rrule: "FREQ=MONTHLY;BYMONTH=3,6,9,12;BYDAY=TH;BYSETPOS=3"'
        lines += [
            f"  - id: ev-{i:04d}",
            f"    title: 事件{i:04d}",
            f"    {when}",
            "    reminders:",
            "      - before: 10 days",
            "      - before: 3个工作日",
            "      - on: start",
        ]
    return "\n".join(lines) + "\n"


def write_config(root: Path, events: int) -> tuple[Path, Path]:
    schedules = root / "schedules"
    schedules.mkdir()
    (schedules / "main.yaml").write_text(schedule_yaml(events), encoding="utf-8")
    templates = root / "templates" / "reminder"
    templates.mkdir(parents=True)
    (templates / "subject.txt").write_text(SUBJECT, encoding="utf-8")
    (templates / "body.txt").write_text(BODY, encoding="utf-8")
    return schedules, root / "templates"


def ledger_rows(count: int, events: int) -> list[NewDelivery]:
    states = [State.SENT] * 90 + [State.FAILED] * 5 + [State.DEAD] * 3 + [State.PENDING] * 2
    rows = []
    for i in range(count):
        key = f"bench/{i}"
        rows.append(
            NewDelivery(
                key=key,
                event_id=f"ev-{i % events:04d}",
                occurrence="2026-01-01",
                reminder_id="before-10d",
                recipient=f"user{i % 1000}@corp.example.com",
                channel="email",
                due_at=NOW - (i * 315.36) % (365 * 86400) + (86400 if i % 100 >= 98 else 0),
                message_id=f"<{i}@bench>",
                subject=f"【提醒】事件{i % events:04d}",
                message="Subject: x\r\nContent-Type: text/plain\r\n\r\n" + "正文 " * 40,
                state=states[i % 100],
                last_error="550 5.1.1 mailbox unavailable" if i % 100 in range(90, 98) else None,
            )
        )
    return rows


async def run(events: int, rows: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="notifier-bench-console-") as tmp:
        root = Path(tmp)
        schedules, templates = write_config(root, events)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            schedules_dir=schedules,
            templates_dir=templates,
            database_url=f"sqlite:///{root / 'ledger.db'}",
            mail_drop_dir=root / "mail",
            admin_token=SecretStr(TOKEN),
            unsubscribe_secret=SecretStr("bench-unsubscribe-secret"),
            http=HttpSettings(port=0),
            watch=False,
        )
        async with App(settings, clock=lambda: NOW) as app:
            started = time.perf_counter()
            data = ledger_rows(rows, events)
            for start in range(0, len(data), CHUNK):
                await app.store.enqueue(data[start : start + CHUNK], now=NOW)
            for i in range(200):
                await app.store.unsubscribe(f"user{i}@corp.example.com", now=NOW, source="bench")
            print(f"ledger: {rows} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            store = ConsoleStore(app.store.db)
            page = None
            after = None
            for _ in range(100):  # the cursor of page 100: as cheap as page 1?
                page = await store.deliveries_page(DeliveryFilter(), after=after, limit=50)
                assert page.next_cursor is not None
                from notifier.ledger.console import decode_cursor

                after = decode_cursor(page.next_cursor)
            assert page is not None and page.next_cursor is not None
            dead = await store.deliveries_page(
                DeliveryFilter(state=State.DEAD), after=None, limit=1
            )
            runner = await start_http(app)
            try:
                base = f"http://127.0.0.1:{bound_port(runner)}"
                paths = {
                    "/healthz (baseline)": "/healthz",
                    "概览 /": "/",
                    "日历 /calendar": "/calendar",
                    "日历 a day": "/calendar?day=2026-04-10",
                    "事件 /events": "/events",
                    "事件 one event": "/events/ev-0003",
                    "投递记录 page 1": "/deliveries",
                    "投递记录 page 101": f"/deliveries?after={page.next_cursor}",
                    "投递记录 state=dead": "/deliveries?state=dead",
                    "投递记录 recipient": "/deliveries?recipient=user7@corp.example.com",
                    "投递记录 event+date": "/deliveries?event=ev-0007&date=2026-03-01",
                    "投递记录 one row": f"/deliveries/{dead.rows[0].id}",
                    "受众 /audiences": "/audiences",
                    "配置 /config": "/config",
                }
                times, first = await measure(base, paths, rounds)
                name, samples, cold = await measure_preview(base, rounds)
                times[name], first[name] = samples, cold
            finally:
                await runner.cleanup()
    out = []
    for name, samples in times.items():
        ms = sorted(s * 1000 for s in samples)
        p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
        out.append(
            (
                name,
                f"{first[name] * 1000:.1f}",
                f"{statistics.median(ms):.1f}",
                f"{p95:.1f}",
                "yes" if p95 <= GOAL_MS else "NO",
            )
        )
    print(f"## Console\n\n{events} events, {rows:,} ledger rows (SQLite), {rounds} requests each,")
    print("round-robin over the sections, one keep-alive connection; time to the full answer.\n")
    print("The first request of each section (cold: planning not cached yet) is not in p50/p95.\n")
    print(table(("section", "first ms", "p50 ms", "p95 ms", f"p95 <= {GOAL_MS:.0f} ms"), out))
    print()
    print(machine())


async def measure(
    base: str, paths: dict[str, str], rounds: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    times: dict[str, list[float]] = {name: [] for name in paths}
    first: dict[str, float] = {}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(base + "/") as resp:
            html = await resp.text()
        match = re.search(r'name="csrf" value="([^"]+)"', html)
        assert match
        async with session.post(
            base + "/signin", data={"csrf": match.group(1), "token": TOKEN, "next": "/healthz"}
        ) as resp:  # lands on /healthz: the overview's first request below is still cold
            assert resp.status == 200 and "ok" in await resp.text()
        for name, path in paths.items():  # the first request: cold caches, planning included
            started = time.perf_counter()
            async with session.get(base + path) as resp:
                body = await resp.text()
                assert resp.status == 200, (name, resp.status, body[:500])
            first[name] = time.perf_counter() - started
        for _ in range(rounds):
            for name, path in paths.items():
                started = time.perf_counter()
                async with session.get(base + path) as resp:
                    await resp.read()
                times[name].append(time.perf_counter() - started)
    return times, first


# The event the editor's preview is measured on (i = 3: a lunar date, three reminders).
PREVIEW_FORM = {
    "id": "ev-0003",
    "title": "事件0003（改）",
    "rule": "lunar",
    "date": "04-04",
    "r0_kind": "before",
    "r0_value": "10 days",
    "r1_kind": "before",
    "r1_value": "3个工作日",
    "r2_kind": "on",
    "r2_value": "start",
    "do": "preview",
}


async def measure_preview(base: str, rounds: int) -> tuple[str, list[float], float]:
    """编辑 → 预览 (issue 22): the send days of 400 days and the added/moved/removed
    comparison for one edited event, POSTed as the form does."""
    name = "编辑 preview (POST)"
    jar = aiohttp.CookieJar(unsafe=True)
    samples: list[float] = []
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(base + "/") as resp:
            match = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
        assert match
        async with session.post(
            base + "/signin", data={"csrf": match.group(1), "token": TOKEN, "next": "/events"}
        ) as resp:
            match = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
        assert match
        form = {**PREVIEW_FORM, "csrf": match.group(1)}
        cold = 0.0
        for i in range(rounds + 1):
            started = time.perf_counter()
            async with session.post(base + "/events/ev-0003/edit", data=form) as resp:
                body = await resp.text()
                assert resp.status == 200 and "检查通过" in body, (resp.status, body[:2000])
            elapsed = time.perf_counter() - started
            if i == 0:
                cold = elapsed
            else:
                samples.append(elapsed)
    return name, samples, cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(run(args.events, args.rows, args.rounds))


if __name__ == "__main__":
    main()

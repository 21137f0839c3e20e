"""A mail account's limits (issue 21): 2,000 messages through a channel limited to 10/second and
300/minute, to a loopback SMTP server that throttles past 300 a minute (as a hosted account
would). One instance on SQLite, then three instances sharing one PostgreSQL database.

Reports the time taken against the ideal (the limits' own schedule from the first send), the
messages lost, the attempts spent on pauses or quota waits (attempts beyond one per message),
the throttle replies the server had to give, and the largest burst it saw (most messages in
any one second; in any one minute).

    .venv/bin/python bench/mail_limits.py [--count 2000] [--only one,three]
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
import dataclasses  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from pydantic import SecretStr  # noqa: E402

from bench._common import machine, pg_database, table, write_outreach_config  # noqa: E402
from notifier.config import (  # noqa: E402
    BounceSettings,
    DeliverySettings,
    HttpSettings,
    Settings,
    SmtpSettings,
)
from notifier.ledger.models import State  # noqa: E402
from notifier.logs import setup_logging  # noqa: E402
from notifier.service import App  # noqa: E402
from tests.smtp_server import Faults, SmtpServer  # noqa: E402

PER_SECOND, PER_MINUTE = 10, 300
LIMITS = f"{PER_SECOND}/second, {PER_MINUTE}/minute"
TIME_BOUND_S = 900.0  # 2,000 at 300/minute is under 7 minutes; a stuck run ends here


def ideal_seconds(count: int, start: float) -> float:
    """When the last of `count` messages could go at best, from `start`, under the limits'
    windows (aligned on the clock, as the quotas' are)."""
    sent, t = 0, math.floor(start)
    in_minute: dict[int, int] = {}
    while True:
        minute = t // 60
        room = min(PER_SECOND, PER_MINUTE - in_minute.get(minute, 0))
        take = min(room, count - sent)
        in_minute[minute] = in_minute.get(minute, 0) + take
        sent += take
        if sent >= count:
            return max(0.0, t - start)
        t += 1


def aligned_max(times: list[float], seconds: int) -> int:
    """The most messages in one clock-aligned window (the quotas' and the server's windows)."""
    counts: dict[int, int] = {}
    for at in times:
        counts[int(at // seconds)] = counts.get(int(at // seconds), 0) + 1
    return max(counts.values(), default=0)


def write_config(work: Path, count: int) -> tuple[Path, Path]:
    """The outreach send to `count` addresses spread over 97 domains (each its own quota),
    an audience of the office's own (`external: false`, the default)."""
    schedules = work / "schedules"
    schedules.mkdir(parents=True)
    with (schedules / "audience.csv").open("w", encoding="utf-8") as out:
        out.write("email,name\n")
        for i in range(count):
            out.write(f"user{i:06d}@corp{i % 97}.example.com,联系人{i}\n")
    return write_outreach_config(work, external=False)


async def run(count: int, instances: int, database_url: str, work: Path) -> list[object]:
    schedules, templates = write_config(work, count)
    server = SmtpServer(Faults(throttle_after=PER_MINUTE, throttle_window=60.0)).start()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        schedules_dir=schedules,
        templates_dir=templates,
        database_url=database_url,
        mail_from="notifier@fao.example.com",
        unsubscribe_secret=SecretStr("bench-unsubscribe-secret"),
        smtp=SmtpSettings(host="127.0.0.1", port=server.port, limits=LIMITS, pool_size=8),
        delivery=DeliverySettings(poll_interval=0.5),
        http=HttpSettings(enabled=False),
        watch=False,
    )
    apps = [App(settings) for _ in range(instances)]
    stop = asyncio.Event()
    try:
        for app in apps:
            await app.__aenter__()
        await apps[0].outbox.send_now("outreach", now=time.time())
        start = time.time()
        workers = [
            asyncio.create_task(w.run(stop)) for app in apps for w in (app.worker, app.chat_worker)
        ]
        deadline = time.monotonic() + TIME_BOUND_S
        # The sink counts in its own thread: look at it every 0.2 s (no event crosses over).
        while len(server.sink.messages) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        first = min(server.sink.accepted_at, default=start)
        last = max(server.sink.accepted_at, default=start)
        stop.set()
        await asyncio.gather(*workers)
        rows = await apps[0].store.list_deliveries(limit=count + 10)
        deferred = sum(a.worker.stats.deferred + a.chat_worker.stats.deferred for a in apps)
    finally:
        for app in apps:
            await app.__aexit__(None, None, None)
        server.stop()
    sent = [r for r in rows if r.state is State.SENT]
    per_second = aligned_max(server.sink.accepted_at, 1)
    per_minute = aligned_max(server.sink.accepted_at, 60)
    ideal = ideal_seconds(count, first)
    return [
        f"{instances} ({'PostgreSQL' if database_url.startswith('postgresql') else 'SQLite'})",
        f"{last - first:.1f}",
        f"{ideal:.1f}",
        count - len(server.sink.messages),
        len(sent),
        sum(r.attempts for r in rows) - len(rows),
        deferred,
        server.sink.injected["throttle"],
        per_second,
        server.sink.largest_burst(1.0),
        per_minute,
        server.sink.duplicates(),
    ]


async def bounce_loop(work: Path, sent: int = 400, bounced: int = 200) -> list[object]:
    """`sent` messages out, `bounced` of them bounce (Postfix, Exim, Exchange and Chinese
    text bounces in turn), beside 50 letters, 50 out-of-office replies and 20 bounces of mail
    sent by hand; the reader polls a real Dovecot until nothing is new."""
    from tests import bounce_samples as samples
    from tests.imap_server import ImapServer

    box, password = "waiban@fao.example.com", "bench-imap-password"
    schedules, templates = write_config(work, sent)
    server = SmtpServer().start()
    kinds = [samples.POSTFIX, samples.EXIM, samples.EXCHANGE, samples.CHINESE]
    with ImapServer(box, password) as imap:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            schedules_dir=schedules,
            templates_dir=templates,
            database_url=f"sqlite:///{work / 'bounces.db'}",
            mail_from=box,
            unsubscribe_secret=SecretStr("bench-unsubscribe-secret"),
            smtp=SmtpSettings(host="127.0.0.1", port=server.port, pool_size=8),
            bounces=BounceSettings(
                imap_url=f"imap://{box.replace('@', '%40')}@127.0.0.1:{imap.port}/INBOX",
                imap_password=SecretStr(password),
            ),
            http=HttpSettings(enabled=False),
            watch=False,
        )
        try:
            async with App(settings) as app:
                await app.outbox.send_now("outreach", now=time.time())
                await app.run_until_idle()
                rows = await app.store.list_deliveries(limit=sent + 10)
                with imap.connect() as conn:
                    for i, row in enumerate(rows[:bounced]):
                        raw = samples.render(
                            kinds[i % 4], mid=row.message_id, to=row.recipient, box=box
                        )
                        conn.append("INBOX", None, None, raw)
                    others = [samples.UNRELATED] * 50 + [samples.OUT_OF_OFFICE] * 50
                    for i, template in enumerate(others):
                        raw = samples.render(template, mid=rows[i].message_id, to="x", box=box)
                        conn.append("INBOX", None, None, raw)
                    for i in range(20):
                        raw = samples.render(
                            samples.POSTFIX, mid=f"<by-hand-{i}@x>", to="y@z", box=box
                        )
                        conn.append("INBOX", None, None, raw)
                assert app.bounce_reader is not None
                started = time.monotonic()
                total, polls = dataclasses.replace(await app.bounce_reader.poll()), 1
                while True:
                    tally = await app.bounce_reader.poll()
                    polls += 1
                    if tally.read == 0:
                        break
                    for k, v in vars(tally).items():
                        setattr(total, k, getattr(total, k) + v)
                seconds = time.monotonic() - started
                entries = await app.suppressions.entries(limit=sent)
            inbox = len(imap.listing("INBOX"))
            processed = len(imap.listing("notifier-processed"))
        finally:
            server.stop()
    return [
        bounced + 120, total.read, total.matched, total.suppressed, total.soft, total.left,
        len(entries), inbox, processed, polls, f"{seconds:.1f}",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--only", default="one,three")
    args = parser.parse_args()
    setup_logging("text", "WARNING")  # what went wrong, if anything, on stderr
    rows = []
    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as tmp:
        if "one" in args.only:
            url = f"sqlite:///{Path(tmp) / 'one.db'}"
            rows.append(asyncio.run(run(args.count, 1, url, Path(tmp) / "one")))
        if "three" in args.only:
            with pg_database() as pg:
                if pg is not None:
                    rows.append(asyncio.run(run(args.count, 3, pg, Path(tmp) / "three")))
    if rows:
        print(
            f"## Mail limits: {args.count:,} messages at {LIMITS}, server throttles past 300/min\n"
        )
        headers = [
            "instances", "first→last s", "ideal s", "lost", "sent", "extra attempts",
            "waits (no attempt)", "server throttles", "max in a clock second", "max in any 1 s",
            "max in a clock minute", "duplicates",
        ]  # fmt: skip
        print(table(headers, rows))
        print()
    print(machine(sink="tests/smtp_server.py (aiosmtpd, in process)"))
    if "bounces" in args.only:
        with tempfile.TemporaryDirectory(prefix="notifier-bench-") as tmp:
            work = Path(tmp) / "bounces"
            row = asyncio.run(bounce_loop(work))
        print("\n## Bounce loop: a real Dovecot mailbox, 200 bounces of ours among 320 messages\n")
        headers = [
            "in the mailbox", "read", "matched", "suppressed", "soft", "left alone",
            "suppression list", "left in INBOX", "in processed folder", "polls", "seconds",
        ]  # fmt: skip
        print(table(headers, [row]))


if __name__ == "__main__":
    main()

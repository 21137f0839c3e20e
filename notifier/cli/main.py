"""The `notifier` command. Settings are built here, once, and passed down."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import notifier.cli.channels as cli_channels
from notifier.checks import load_config, load_hook_secrets, workday_sources
from notifier.cli.common import fail_config, run_async, settings_or_exit
from notifier.cli.holidays import holidays_group
from notifier.compose.message import file_size
from notifier.compose.records import FORMATS, Format
from notifier.config import Settings
from notifier.constants import UPCOMING_DAYS
from notifier.delivery.worker import WorkerStats
from notifier.errors import ConfigError, NotifierError
from notifier.ledger.limits import Waiting
from notifier.ledger.models import Delivery, State
from notifier.logs import setup_logging
from notifier.schedule.model import Attachment
from notifier.schedule.planner import plan, planned_json
from notifier.service import App

T = TypeVar("T")

log = logging.getLogger(__name__)
# Wide enough for the tables when piped or captured (rich assumes 80 columns off a terminal).
PIPE_WIDTH = 160


def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else PIPE_WIDTH, soft_wrap=True)


class DateType(click.ParamType[date, str]):
    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD)", param, ctx)


DATE = DateType()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """notifier: 关键日期提醒与外联邮件服务 (key-date reminders and outreach by email)."""


@main.command()
def run() -> None:
    """启动服务 Run the service: timer, delivery, HTTP side, config watcher."""
    settings = settings_or_exit()
    setup_logging(settings.log_format, settings.log_level, settings.tz)
    # The HTTP side only here: the other commands start without aiohttp's server and the
    # console (about 0.15 s of imports).
    from notifier.web import start_http

    async def service() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        kind = type(loop).__module__.partition(".")[0]  # "uvloop" or "asyncio"
        log.info(f"event loop: {kind}", extra={"action": "event_loop", "loop": kind})
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with App(settings) as app:
            # SIGHUP re-reads schedules, templates and hook secrets (`kill -HUP <pid>`).
            loop.add_signal_handler(signal.SIGHUP, app.request_reload)
            await app.run(stop, serve=start_http)

    run_async(service, loop=settings.event_loop)


@main.command()
def check() -> None:
    """校验日程与模板 Validate schedules and templates (exit 1 on errors, 2 on a bad setting)."""
    settings = settings_or_exit()
    try:
        schedule, _, warnings = load_config(settings, now=datetime.now(settings.tz))
        load_hook_secrets(settings, schedule)
    except ConfigError as exc:
        fail_config(exc)
        return
    for line in warnings:
        click.echo(f"警告 warning: {line}", err=True)
    problems = run_async(lambda: cli_channels.saved_problems(settings, schedule))
    for line in problems:
        click.echo(f"渠道错误 channel error: {line}", err=True)
    if problems:
        sys.exit(1)
    for source in workday_sources(schedule, datetime.now(settings.tz).date()):
        click.echo(f"工作日数据 workday data {source.year}: {source.in_words()}")
    click.echo(
        f"配置有效 OK: {len(schedule.events)} events, "
        f"{len(schedule.audiences)} audiences, {len(schedule.hooks)} hooks, "
        f"{len(schedule.files)} files"
    )


@main.command()
@click.option("--from", "since", type=DATE, help="first local send date (default today)")
@click.option(
    "--to", "until", type=DATE, help=f"last local send date (default +{UPCOMING_DAYS} days)"
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def upcoming(since: date | None, until: date | None, as_json: bool) -> None:
    """计划发送 Planned sends whose local send date is in the window, by time."""
    settings = settings_or_exit()
    tz = settings.tz
    try:
        schedule, _, _ = load_config(settings, now=datetime.now(tz))
    except ConfigError as exc:
        fail_config(exc)
        return
    first = since or datetime.now(tz).date()
    last = until or first + timedelta(days=UPCOMING_DAYS)
    sends = plan(
        schedule,
        datetime.combine(first, time(0), tz),
        datetime.combine(last + timedelta(days=1), time(0), tz),
        tz,
    )
    rows = [planned_json(p, schedule) for p in sends]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"计划发送 Upcoming sends {first} .. {last}")
    for col in (
        "发送时间 send at",
        "事件 event",
        "日期 dates",
        "提醒 reminder",
        "对象 audience",
        "人数",
    ):
        table.add_column(col)
    for p, row in zip(sends, rows, strict=True):
        span = row["start"] if row["start"] == row["end"] else f"{row['start']}..{row['end']}"
        table.add_row(
            p.send_at.strftime("%Y-%m-%d %H:%M %a") + ("（暂定）" if p.provisional else ""),
            f"{p.event.title}\n{p.event.id}",
            span,
            f"{p.reminder.label} ({p.reminder.id})"
            + (f" {p.index}/{p.count}" if p.reminder.every else ""),
            p.reminder.audience,
            str(row["recipients"]),
        )
    console = _console()
    console.print(table)
    console.print(f"{len(rows)} planned sends")
    provisional = sum(1 for p in sends if p.provisional)
    if provisional:
        console.print(
            f"（暂定）{provisional} provisional: their days depend on workday data not yet "
            "published (see `notifier check`)"
        )
    console.print(_waiting_line(settings))


def _waiting_line(settings: Settings) -> str:
    """`upcoming`'s last line: the ledger rows waiting for a mail account's quota or pause."""

    async def go() -> tuple[int, float | None]:
        async with App(settings) as app:
            return await app.waiting_summary()

    count, first = run_async(go)
    if not count or first is None:
        return "等待配额 waiting for quota: 0 rows"
    at = datetime.fromtimestamp(first, settings.tz).strftime("%Y-%m-%d %H:%M")
    return (
        f"等待配额 waiting for quota: {count} rows; 最早发出 first goes at {at}"
        " (see `notifier status`)"
    )


@main.command()
@click.argument("event")
@click.option("--reminder", help="reminder id (default: a manual notice)")
@click.option("--recipient", help="render for this address (default: the first of the audience)")
@click.option("--date", "on", type=DATE, help="the occurrence starting on this date")
@click.option(
    "--audience",
    help="any of the reminder's audiences (default: the first that has --recipient, or the"
    " first); a chat group shows its message as posted",
)
def preview(
    event: str, reminder: str | None, recipient: str | None, on: date | None, audience: str | None
) -> None:
    """预览邮件 Print the rendered message for an event."""
    settings = settings_or_exit()
    used: list[str] = []  # the audience rendered for, then the row's channel
    files: list[Attachment] = []

    async def go() -> str:
        async with App(settings) as app:
            found = app.preview(
                event,
                reminder_id=reminder,
                on=on,
                recipient=recipient,
                audience=audience,
                as_planned=True,
            )
            if found.row is None:
                names = ", ".join(found.searched)
                raise NotifierError(
                    f"{recipient or '（无收件人 no recipient）'} 不在受众 {names} 中"
                    f" / is not in audience {names}"
                )
            used.extend([found.audience.name, found.row.channel])
            files.extend(found.attachments)
            return found.row.message

    from email import message_from_string
    from email.policy import default

    raw = run_async(go)
    name, channel = used
    click.echo(f"受众 Audience: {name}")
    if channel != "email":
        click.echo(cli_channels.chat_preview(channel, raw))
        if files:
            click.echo(
                f"（群里只收到文字，不含附件 the group gets the text without {len(files)} "
                "attachment(s): robots cannot carry files）"
            )
        return
    for file in files:
        click.echo(f"附件 Attachment: {file.name} ({file.mime}, {file_size(file.size)})")
    msg = message_from_string(raw, policy=default)
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        click.echo(f"{header}: {msg[header]}")
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            click.echo(f"\n--- {part.get_content_type()} ---")
            click.echo(part.get_content())


async def _deliver_with_progress(app: App, total: int, console: Console) -> WorkerStats:
    """Deliver now; on a terminal show a progress bar, elsewhere stay quiet."""
    if not console.is_terminal:
        return await app.worker.run_until_idle()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("发送中 sending", total=total)
        burst = asyncio.create_task(app.worker.run_until_idle())
        while not burst.done():
            st = app.worker.stats
            progress.update(bar, completed=st.sent + st.failed + st.dead + st.skipped)
            await asyncio.wait([burst], timeout=0.1)
        return burst.result()


@main.command()
@click.argument("event")
@click.option("--reminder", help="send this reminder now (default: a manual notice)")
@click.option("--date", "on", type=DATE, help="the occurrence starting on this date")
@click.option("--again", is_flag=True, help="send even if already sent")
def send(event: str, reminder: str | None, on: date | None, again: bool) -> None:
    """立即发送 Send now to the event's audience; a second run sends nothing new."""
    settings = settings_or_exit()
    setup_logging(settings.log_format, "WARNING", settings.tz)

    async def go() -> None:
        async with App(settings) as app:
            created, size = await app.send_now(event, reminder_id=reminder, on=on, again=again)
            console = _console()
            if not created:
                console.print(f"已发送过，无新邮件 Already sent: 0 new of {size} (use --again)")
                return
            stats = await _deliver_with_progress(app, created, console)
            console.print(
                f"已发送 sent {stats.sent}, 重试 retrying {stats.retried}, "
                f"失败 failed {stats.failed}, via {app.channel.description}"
            )

    # It delivers like `notifier run`, so on the same event loop (uvloop where installed).
    run_async(go, loop=settings.event_loop)


def _error_or_wait(error: str | None, waiting: Waiting | None, tz: ZoneInfo) -> str:
    """A waiting row says when it goes and why; any other, its last error."""
    if waiting is None:
        return (error or "")[:60]
    at = datetime.fromtimestamp(waiting.until, tz).strftime("%m-%d %H:%M")
    return f"{waiting.reason[:40]} → {at}"


@main.group(invoke_without_command=True)
@click.option("--state", type=click.Choice([s.value for s in State]), help="only this state")
@click.option("--event", help="only this event id")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def deliveries(ctx: click.Context, state: str | None, event: str | None, limit: int) -> None:
    """投递记录 The ledger, newest first (`deliveries export`: the record as XLSX or CSV)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_or_exit()

    async def go() -> None:
        async with App(settings) as app:
            rows = await app.deliveries(
                state=State(state) if state else None, event=event, limit=limit
            )
            waits = await app.waiting([d.id for d in rows])
        table = Table(title="投递记录 Deliveries")
        for col in ("id", "state", "due", "event", "reminder", "recipient", "attempts", "error"):
            table.add_column(col)
        tz = settings.tz
        for d in rows:
            table.add_row(
                str(d.id),
                d.state.value,
                datetime.fromtimestamp(d.due_at, tz).strftime("%Y-%m-%d %H:%M"),
                d.event_id,
                d.reminder_id,
                d.recipient,
                str(d.attempts),
                _error_or_wait(d.last_error, waits.get(d.id), tz),
            )
        _console().print(table)

    run_async(go)


@deliveries.command("export")
@click.option("--event", help="only this event id")
@click.option("--reminder", help="only this reminder id")
@click.option("--audience", help="only the recipients of this audience")
@click.option("--state", type=click.Choice([s.value for s in State]), help="only this state")
@click.option("--recipient", help="only this address")
@click.option("--from", "start", type=DATE, help="planned on or after this day (YYYY-MM-DD)")
@click.option("--to", "end", type=DATE, help="planned on or before this day (YYYY-MM-DD)")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="xlsx or csv (default: the output file's suffix, else xlsx)",
)
@click.option("-o", "--output", default="-", help="file to write; - for stdout (default)")
def deliveries_export(
    event: str | None,
    reminder: str | None,
    audience: str | None,
    state: str | None,
    recipient: str | None,
    start: date | None,
    end: date | None,
    fmt: Format | None,
    output: str,
) -> None:
    """导出投递台账 Export the delivery log (XLSX or CSV, Chinese headers, local times)."""
    settings = settings_or_exit()
    suffix = output.rpartition(".")[2].lower() if output != "-" else ""
    chosen: Format = fmt or ("csv" if suffix == "csv" else "xlsx")
    if output == "-" and chosen == "xlsx" and sys.stdout.isatty():
        click.echo("错误 error: an XLSX is binary; give -o FILE or redirect stdout", err=True)
        sys.exit(2)

    async def go() -> int:
        async with App(settings) as app:
            record = await app.delivery_record(
                chosen,
                event=event,
                reminder=reminder,
                audience=audience,
                state=State(state) if state else None,
                recipient=recipient,
                start=start,
                end=end,
            )
            # Written to a file beside the target and renamed: no half record on a failure.
            target = None if output == "-" else Path(output)
            part = None if target is None else target.with_name(target.name + ".part")
            out = sys.stdout.buffer if part is None else part.open("wb")
            try:
                async for chunk in record.chunks():
                    out.write(chunk)
                out.flush()
            except BaseException:
                if part is not None:
                    out.close()
                    part.unlink(missing_ok=True)
                raise
            if part is not None and target is not None:
                out.close()
                part.replace(target)
            return record.rows

    rows = run_async(go)
    where = "stdout" if output == "-" else output
    click.echo(f"已导出 exported {rows} rows to {where} ({chosen})", err=True)


@main.command()
@click.option("--limit", type=int, default=50, show_default=True, help="waiting rows shown")
def status(limit: int) -> None:
    """台账状态 The ledger's rows by state and channel, and the rows waiting for quota."""
    settings = settings_or_exit()
    if limit < 1:
        click.echo("错误 error: --limit must be at least 1", err=True)
        sys.exit(2)

    async def go() -> tuple[dict[tuple[str, str], int], list[tuple[Delivery, Waiting]], int]:
        async with App(settings) as app:
            counts = await app.ledger_counts()
            rows = await app.waiting_rows(limit=limit)
            total, _ = await app.waiting_summary()
            return counts, rows, total

    counts, rows, total = run_async(go)
    console = _console()
    channels = sorted({channel for _, channel in counts})
    table = Table(title="台账 Ledger rows by state")
    table.add_column("状态 state")
    for channel in channels:
        table.add_column(channel, justify="right")
    table.add_column("合计 total", justify="right")
    for state in State:
        cells = [counts.get((state.value, c), 0) for c in channels]
        table.add_row(state.value, *(str(n) for n in cells), str(sum(cells)))
    console.print(table)
    console.print(f"共 total {sum(counts.values())} rows")
    if not rows:
        console.print("等待配额 waiting for quota: 0 rows")
        return
    tz = settings.tz
    waits = Table(title=f"等待配额或暂停 Waiting for quota or a pause: {total} rows")
    for col in ("id", "channel", "event", "recipient", "原因 reason", "发出时间 goes at"):
        waits.add_column(col)
    for row, wait in rows:
        waits.add_row(
            str(row.id),
            row.channel,
            row.event_id,
            row.recipient,
            wait.reason,
            datetime.fromtimestamp(wait.until, tz).strftime("%Y-%m-%d %H:%M"),
        )
    console.print(waits)
    if total > len(rows):
        console.print(f"（仅显示前 {len(rows)} 行 showing the first {len(rows)}; see --limit）")


@main.command()
@click.option(
    "--state",
    type=click.Choice([State.DEAD.value, State.FAILED.value]),
    default=State.DEAD.value,
    show_default=True,
)
def retry(state: str) -> None:
    """重新投递 Put dead (or failed) deliveries back in the queue."""
    settings = settings_or_exit()

    async def go() -> int:
        async with App(settings) as app:
            return await app.requeue([State(state)])

    click.echo(f"重新排队 requeued: {run_async(go)}")


@main.command()
def migrate() -> None:
    """数据库迁移 Apply database migrations (run also does it at start)."""
    settings = settings_or_exit()
    from notifier.ledger.db import connect
    from notifier.ledger.store import Store

    async def go() -> tuple[list[int], int]:
        db = connect(settings.database_url)
        async with db:
            store = Store(db)
            applied = await store.migrate()
            return applied, await store.schema_version()

    applied, version = run_async(go)
    click.echo(f"applied {applied or 'nothing'}; schema version {version}")


main.add_command(holidays_group)
main.add_command(cli_channels.channels)

if __name__ == "__main__":  # pragma: no cover
    main()

"""The app object: built from settings, opened with `async with`, run until told to stop.

Wiring happens here and only here: the database, the ledger, the schedule, the renderer,
the channel, the worker, the timer and (in `run`) the HTTP side and the config watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Protocol

from notifier.channels.base import Channel
from notifier.channels.email import SmtpChannel
from notifier.channels.maildrop import MailDropChannel
from notifier.checks import load_config
from notifier.config import Settings
from notifier.constants import PLAN_HORIZON
from notifier.db import connect
from notifier.delivery import DeliveryWorker
from notifier.errors import ConfigError, NotifierError
from notifier.metrics import Metrics
from notifier.outbox import Outbox
from notifier.planner import PlannedSend
from notifier.scheduler import Timer
from notifier.schedules import Schedule
from notifier.store import Store

log = logging.getLogger(__name__)

# Sends older than this are never caught up nor recorded missed, however long the downtime.
MAX_CATCH_UP = timedelta(days=366)
WATERMARK = "materialized_until"


class Listener(Protocol):
    """What an edge (the HTTP side) hands back when started: something to clean up."""

    async def cleanup(self) -> None: ...


# The HTTP side is started by the caller's `serve` (cli passes `notifier.web.start_http`):
# web sits above service and imports it, never the other way round.
Serve = Callable[["App"], Awaitable[Listener]]


class NotStarted(NotifierError):
    """The app was used before `async with App(...)` opened it."""


def make_channel(settings: Settings) -> Channel:
    if settings.smtp.host:
        return SmtpChannel(settings.smtp, envelope_from=settings.mail_from)
    return MailDropChannel(settings.mail_drop_dir)


def unsubscribe_secret(settings: Settings) -> bytes:
    """The key of unsubscribe tokens: the setting, or a key file kept beside the mail drop."""
    if settings.unsubscribe_secret is not None:
        return settings.unsubscribe_secret.get_secret_value().encode()
    path = Path("var") / "unsubscribe.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError), path.open("x") as handle:
            handle.write(secrets.token_hex(32))
    return hashlib.sha256(path.read_text().strip().encode()).digest()


class App:
    def __init__(
        self,
        settings: Settings,
        *,
        channel: Channel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._channel = channel
        self._stack = AsyncExitStack()
        self._store: Store | None = None
        self._outbox: Outbox | None = None
        self._worker: DeliveryWorker | None = None
        self._timer: Timer | None = None
        self.warnings: list[str] = []
        # Problems in the files on disk that a reload rejected; the running config is older.
        self.config_errors: list[str] = []
        self.started_at = clock()
        # When the running config was last (re)loaded: shown by the console.
        self.loaded_at = clock()
        self.reload_failed_at: float | None = None

    # --- lifecycle ---

    async def __aenter__(self) -> App:
        try:
            await self.open()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def open(self) -> None:
        s = self.settings
        schedule, renderer, warnings = load_config(s, now=self.now())
        self.warnings = warnings
        db = connect(s.database_url)
        await db.open()
        self._stack.push_async_callback(db.close)
        self._store = Store(db)
        await self._store.migrate()
        channel = self._channel or make_channel(s)
        self._stack.push_async_callback(channel.close)
        self.channel = channel
        self._outbox = Outbox(
            settings=s,
            store=self._store,
            renderer=renderer,
            schedule=schedule,
            unsubscribe_secret=unsubscribe_secret(s),
        )
        self._worker = DeliveryWorker(
            store=self._store,
            channel=channel,
            settings=s.delivery,
            concurrency=s.smtp.pool_size,
            send_timeout=channel.send_timeout,
            rate_limit=s.smtp.rate_limit,
            worker_id=self.worker_id,
            metrics=self.metrics,
            clock=self.clock,
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            raise NotStarted("open the app first: `async with App(settings) as app:`")
        return self._store

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            raise NotStarted("open the app first: `async with App(settings) as app:`")
        return self._outbox

    @property
    def worker(self) -> DeliveryWorker:
        if self._worker is None:
            raise NotStarted("open the app first: `async with App(settings) as app:`")
        return self._worker

    @property
    def schedule(self) -> Schedule:
        return self.outbox.schedule

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), self.settings.tz)

    # --- planning ---

    async def prepare(self) -> None:
        """Make the rows due soon (and catch up after downtime), then wake the worker."""
        now = self.clock()
        mark = await self.store.get_meta(WATERMARK)
        graces = [self.outbox.grace_of(e) for e in self.schedule.events.values()]
        since = now - max(graces or [self.settings.grace]).total_seconds()
        if mark is not None:
            since = min(since, float(mark))
        since = max(since, now - MAX_CATCH_UP.total_seconds())
        result = await self.outbox.materialize(now, since=since)
        until = now + self.settings.prepare_ahead.total_seconds()
        if mark is None or float(mark) < until:
            await self.store.set_meta(WATERMARK, repr(until))
        if result.pending:
            self.worker.wake()

    def upcoming(self, since: datetime, until: datetime) -> list[PlannedSend]:
        return self.outbox.planned(since, until)

    async def replan(self) -> None:
        """Materialize what is due, and set the timer for the sends of the coming days."""
        await self.prepare()
        if self._timer is None:
            return
        now = self.now()
        ahead = self.settings.prepare_ahead
        sends = self.upcoming(now, now + PLAN_HORIZON)
        times = [max(now, p.send_at - ahead) for p in sends]
        count = self._timer.reschedule(times)
        log.info("timer set", extra={"action": "timer_set", "jobs": count})

    def log_next(self, count: int = 5) -> None:
        """Say at start what comes next, so staff see the calendar was understood."""
        now = self.now()
        for p in self.upcoming(now, now + timedelta(days=366))[:count]:
            log.info(
                f"下一次发送 next: {p.send_at:%Y-%m-%d %H:%M} {p.event.title} "
                f"({p.reminder.label}, {p.reminder.audience})",
                extra={"action": "planned", "plan": p.plan_key},
            )

    # --- reload ---

    def reload(self) -> bool:
        """Re-read schedules and templates; keep the running config if they are invalid."""
        try:
            schedule, renderer, warnings = load_config(self.settings, now=self.now())
        except ConfigError as exc:
            self.config_errors = exc.errors
            self.reload_failed_at = self.clock()
            self.metrics.config_errors.set(len(exc.errors))
            for line in exc.errors:
                log.error(line, extra={"action": "reload_rejected"})
            return False
        self.outbox.schedule = schedule
        self.outbox.renderer = renderer
        self.warnings = warnings
        self.config_errors = []
        self.metrics.config_errors.set(0)
        self.loaded_at = self.clock()
        log.info(
            "config reloaded",
            extra={
                "action": "reloaded",
                "events": len(schedule.events),
                "hooks": len(schedule.hooks),
            },
        )
        return True

    async def _watch(self, stop: asyncio.Event) -> None:
        from watchfiles import awatch

        dirs = [self.settings.schedules_dir, self.settings.templates_dir]
        async for _changes in awatch(*dirs, stop_event=stop, debounce=300, step=100):
            if self.reload():
                await self.replan()

    # --- run ---

    async def run(
        self,
        stop: asyncio.Event,
        *,
        ready: asyncio.Event | None = None,
        serve: Serve | None = None,
    ) -> None:
        """The service: timer, delivery worker, HTTP side (`serve`) and watcher, until `stop`."""
        s = self.settings
        self._timer = Timer(prepare=self.prepare, replan=self.replan, tz=s.tz, metrics=self.metrics)
        self._timer.start()
        log.info(
            "notifier started",
            extra={
                "action": "started",
                "channel": self.channel.description,
                "events": len(self.schedule.events),
                "database": self.store.describe(),
            },
        )
        if s.uses_mail_drop:
            log.warning(
                f"未配置 SMTP，邮件写入本地目录 {s.mail_drop_dir}/new "
                f"(no SMTP host set: mail goes to the local mail drop)",
                extra={"action": "mail_drop", "dir": str(s.mail_drop_dir)},
            )
        for line in self.warnings:
            log.warning(line, extra={"action": "config_warning"})
        tasks: list[asyncio.Task[None]] = []
        runner: Listener | None = None
        try:
            await self.replan()
            self.log_next()
            if s.http.enabled and serve is not None:
                runner = await serve(self)
            if s.watch:
                tasks.append(asyncio.create_task(self._watch(stop), name="notifier-watch"))
            if ready is not None:
                ready.set()
            await self.worker.run(stop, drain_timeout=s.shutdown_timeout)
        finally:
            self._timer.shutdown()
            if runner is not None:
                await runner.cleanup()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("notifier stopped", extra={"action": "stopped"})

"""The app object: built from settings, opened with `async with`, run until told to stop.

Wiring happens here and only here: the database, the ledger, the schedule, the renderer,
the channel, the worker, the timer and (in `run`) the HTTP side and the config watcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from pydantic import SecretStr

from notifier.bounces.mailbox import BounceReader
from notifier.channels.base import Channel
from notifier.channels.registry import STATUS_META, ChannelRegistry, email_channel
from notifier.checks import load_config, load_hook_secrets, workday_sources
from notifier.compose.admin_notices import AdminNotices
from notifier.compose.outbox import Outbox, PreviewRow, Unmade
from notifier.compose.records import DeliveryRecord, Format
from notifier.compose.rows import RunningConfig
from notifier.compose.tokens import unsubscribe_key, verify_unsubscribe_token
from notifier.config import BounceSettings, Settings, read_secret
from notifier.delivery.quotas import QuotaGate
from notifier.delivery.worker import DeliveryWorker, WorkerStats
from notifier.editing import Who
from notifier.editor import Editor
from notifier.errors import NotifierError, SendError, StoreError
from notifier.keys import EMAIL
from notifier.ledger.console import ConsoleStore
from notifier.ledger.db import connect
from notifier.ledger.export import ExportRow
from notifier.ledger.limits import LimitStore, Waiting
from notifier.ledger.models import Delivery, DeliveryFilter, NewDelivery, State
from notifier.ledger.store import Store
from notifier.ledger.suppressions import BounceLedger, Suppression, SuppressionStore
from notifier.logs import REPEAT_WINDOW_SECONDS, flush_repeats
from notifier.masking import Masker, settings_masker
from notifier.metrics import Metrics
from notifier.planning import PlanningLoop
from notifier.reloading import Loaded, Reloader, brief
from notifier.schedule.model import Hook, Schedule
from notifier.schedule.planner import PlannedSend
from notifier.timer import Timer

log = logging.getLogger(__name__)

# Lanes of the chat worker: sends to several robots at once. A lane seldom waits on a pace:
# the worker claims a paced robot's row only when its pace has room (delivery/fairness.py).
CHAT_LANES = 8
# Suppressed addresses read to count an audience's (a list of thousands is already rare).
SUPPRESSED_READ = 100_000


class Listener(Protocol):
    """What an edge (the HTTP side) hands back when started: something to clean up."""

    async def cleanup(self) -> None: ...


# The HTTP side is started by the caller's `serve` (cli passes `notifier.web.start_http`):
# web sits above service and imports it, never the other way round.
Serve = Callable[["App"], Awaitable[Listener]]


class NotStarted(NotifierError):
    """The app was used before `async with App(...)` opened it."""


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
        self._channel = channel
        self._stack = AsyncExitStack()
        self._store: Store | None = None
        self._outbox: Outbox | None = None
        self._worker: DeliveryWorker | None = None
        self._chat_worker: DeliveryWorker | None = None
        self._channels: ChannelRegistry | None = None
        self._timer: Timer | None = None
        self._notices: AdminNotices | None = None
        self._planning: PlanningLoop | None = None
        self._console: ConsoleStore | None = None
        self.warnings: list[str] = []
        # Hook secrets by variable name, read at start and at each reload (never per request).
        self.hook_secrets: dict[str, SecretStr] = {}
        # Every secret configured now, out of error texts (`mask_secrets`); remade at reload.
        self._masker = Masker()
        # Problems in the files on disk that a reload rejected; the running config is older.
        self.config_errors: list[str] = []
        self.started_at = clock()
        # When the running config was last (re)loaded: shown by the console.
        self.loaded_at = clock()
        self.reload_failed_at: float | None = None
        self._reloader = Reloader(self)
        #: The console's editing use cases (editor.py).
        self.editor = Editor(self)
        # One console save at a time in this process: check, write and reload go together.

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
        self.hook_secrets = load_hook_secrets(s, schedule)
        self.warnings = warnings
        db = connect(s.database_url)
        await db.open()
        self._stack.push_async_callback(db.close)
        self._store = Store(db)
        self._console = ConsoleStore(db)
        await self._store.migrate()
        channel = self._channel or email_channel(s)
        self._stack.push_async_callback(channel.close)
        self.channel = channel
        self._outbox = Outbox(
            settings=s,
            store=self._store,
            config=RunningConfig(schedule, renderer),
            unsubscribe_secret=unsubscribe_key(s),
        )
        self._worker = DeliveryWorker(
            store=self._store,
            channel=channel,
            settings=s.delivery,
            concurrency=s.smtp.pool_size,
            rate_limit=s.smtp.rate_limit,
            metrics=self.metrics,
            clock=self.clock,
            mask=self.mask_secrets,
        )
        self._notices = AdminNotices(
            settings=s, store=self._store, outbox=self._outbox, wake=self.wake_workers
        )
        self._planning = PlanningLoop(
            settings=s,
            store=self._store,
            outbox=self._outbox,
            notices=self._notices,
            wake=self.wake_workers,
            clock=self.clock,
        )
        await self._open_channels(schedule, channel)
        # The mail accounts' shared quotas and throttle pauses: both workers send mail.
        self.limits = LimitStore(db)
        self.suppressions = SuppressionStore(db)
        # The bounce mailbox (NOTIFIER_BOUNCES__*), polled while `run` runs.
        self.bounce_reader = self._bounce_reader(s.bounces, EMAIL) if s.bounces.imap_url else None
        self.worker.suppressions = self.chat_worker.suppressions = self.suppressions
        self.worker.quotas = self.chat_worker.quotas = QuotaGate(
            self.limits, tz=s.tz, clock=self.clock
        )
        await self.editor.notice_outside_edits_logged()

    def _bounce_reader(self, settings: BounceSettings, account: str) -> BounceReader:
        return BounceReader(
            settings,
            account=account,
            ledger=BounceLedger(self.store.db),
            suppressions=self.suppressions,
            get_meta=self.store.get_meta,
            set_meta=self.store.set_meta,
            clock=self.clock,
        )

    def bounce_readers(self) -> list[BounceReader]:
        """The bounce mailboxes to poll: the settings' (NOTIFIER_BOUNCES__*), and each mail
        channel's own (`bounces:` under the channel; its password variable set). Made when
        `run` starts: a reload that changes a channel's mailbox applies at the next start."""
        readers = [self.bounce_reader] if self.bounce_reader is not None else []
        for cid, spec in sorted(self.schedule.channels.items()):
            mine = spec.smtp.bounces if spec.smtp is not None else None
            if mine is None or cid in self.channels.skipped:
                continue
            env = mine.imap_password_env
            settings = BounceSettings(
                imap_url=mine.imap_url,
                imap_password=read_secret(env) if env else None,
                poll_seconds=mine.poll_seconds,
                processed_folder=mine.processed_folder,
            )
            readers.append(self._bounce_reader(settings, cid))
        return readers

    def mask_secrets(self, text: str) -> str:
        """`text` with every configured secret replaced by `***` (any case, AUTH forms too):
        what the workers apply to a send's error before it is logged or stored."""
        return self._masker(text)

    def _remask(self) -> None:
        more = self.channels.sensitive()
        for spec in self.schedule.channels.values():  # mail channels' bounce mailboxes
            env = spec.smtp.bounces.imap_password_env if spec.smtp and spec.smtp.bounces else None
            if env and (password := read_secret(env)) is not None:
                more.append(password.get_secret_value())
        self._masker = settings_masker(self.settings, self.hook_secrets, more)

    def wake_workers(self) -> None:
        """New rows are due now: look at once, email and chat alike (not at the next poll)."""
        self.worker.wake()
        if self._chat_worker is not None:
            self._chat_worker.wake()

    @property
    def planning(self) -> PlanningLoop:
        if self._planning is None:
            raise NotStarted("open the app first: `async with App(settings) as app:`")
        return self._planning

    @property
    def notices(self) -> AdminNotices:
        if self._notices is None:
            raise NotStarted("open the app first: `async with App(settings) as app:`")
        return self._notices

    async def _open_channels(self, schedule: Schedule, email: Channel) -> None:
        """The chat channels and their own worker: robots never hold the email lanes."""
        registry = ChannelRegistry(email, on_status=self._save_channel_status)
        self._stack.push_async_callback(registry.close)
        for cid in schedule.channels:
            saved = await self.store.get_meta(STATUS_META + cid)
            if saved:
                registry.load_statuses({cid: saved})
        registry.build(schedule.channels)
        self._channels = registry
        self.worker.router = registry.route
        self._claim_kinds()
        self._chat_worker = DeliveryWorker(
            store=self.store,
            channel=email,
            router=registry.route,
            kind="chat",
            fair=True,
            settings=self.settings.delivery,
            concurrency=CHAT_LANES,
            metrics=self.metrics,
            clock=self.clock,
            mask=self.mask_secrets,
        )
        self._remask()

    def _claim_kinds(self) -> None:
        """With chat channels configured, the email worker claims email rows only (robots
        have their own worker); without, it claims as it always did (the tuned claim, no
        filter), and a stray chat row it gets is routed like any other."""
        self.worker.kind = "email" if self.channels.chats or self.channels.mails else None

    async def _save_channel_status(self, cid: str, problem: str | None) -> None:
        await self.store.set_meta(STATUS_META + cid, self.channels.status_record(cid))

    @property
    def channels(self) -> ChannelRegistry:
        if self._channels is None:
            raise NotStarted("open the app first: `async with App(settings) as app:`")
        return self._channels

    @property
    def chat_worker(self) -> DeliveryWorker:
        if self._chat_worker is None:
            raise NotStarted("open the app first: `async with App(settings) as app:`")
        return self._chat_worker

    async def run_until_idle(self) -> WorkerStats:
        """Deliver everything due now through both workers (email, chat); summed counts."""
        email, chat = await asyncio.gather(
            self.worker.run_until_idle(), self.chat_worker.run_until_idle()
        )
        return WorkerStats(
            *(a + b for a, b in zip(vars(email).values(), vars(chat).values(), strict=True))
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

    # --- use cases: what the edges (web, cli) call, never the parts behind them ---

    @property
    def console(self) -> ConsoleStore:
        """The console's queries (sessions, audit, pages) over the ledger's database."""
        if self._console is None:
            raise NotStarted("open the app first: `async with App(settings) as app:`")
        return self._console

    async def send_now(
        self,
        event_id: str,
        *,
        reminder_id: str | None = None,
        on: date | None = None,
        again: bool = False,
    ) -> tuple[int, int]:
        """Send an event's reminder (or a manual notice) now: (rows created, audience size).

        Wakes both workers: the rows may be a chat group's as well as email.
        """
        created, size = await self.outbox.send_now(
            event_id, reminder_id=reminder_id, on=on, now=self.clock(), again=again
        )
        if created:
            self.wake_workers()
        return created, size

    async def retry(self, delivery_id: int) -> bool:
        """A failed or dead row back in the queue, due now; False if it is neither."""
        if not await self.console.retry(delivery_id, now=self.clock()):
            return False
        self.wake_workers()
        return True

    async def resend(self, row: Delivery) -> int | None:
        """A failed or dead row's message sent again as a new row; its id (None if the row
        is neither)."""
        new_id = await self.console.resend(row, now=self.clock(), store=self.store)
        if new_id is not None:
            self.wake_workers()
        return new_id

    async def requeue(self, states: Sequence[State]) -> int:
        """Every row in `states` back in the queue, due now; how many."""
        count = await self.store.requeue(states, now=self.clock())
        if count:
            self.wake_workers()
        return count

    def hook_rows(
        self, hook: Hook, webhook_id: str, payload: Mapping[str, Any], due: datetime
    ) -> list[NewDelivery]:
        """The rows a webhook makes (rendered now; committed by `accept_hooks`)."""
        return self.outbox.rows.hook_rows(hook, webhook_id, payload, due)

    async def accept_hooks(
        self, items: Sequence[tuple[str, str, Sequence[NewDelivery]]]
    ) -> list[tuple[list[int], bool]]:
        """Commit a batch of webhooks' rows in one transaction: per item, the ids of its rows
        and whether it was a redelivery (`Store.accept_hooks`). The intake wakes the workers
        for a new webhook due now (`wake_workers`)."""
        # Attachment contents first: the rows about to be committed name them.
        blobs = self.outbox.rows.take_blobs()
        try:
            await self.store.put_attachments(blobs, now=self.clock())
        except BaseException:
            self.outbox.rows.keep_blobs(blobs)
            raise
        return await self.store.accept_hooks(items, now=self.clock())

    def preview(
        self,
        event_id: str,
        *,
        reminder_id: str | None,
        on: date | None = None,
        recipient: str | None = None,
        audience: str | None = None,
        as_planned: bool = False,
    ) -> PreviewRow:
        """The row a send would make for `recipient` (default: the audience's first), made
        now and never enqueued. `as_planned`: the reminder's own send day, not today."""
        return self.outbox.preview_row(
            event_id,
            reminder_id=reminder_id,
            on=on,
            now=self.clock(),
            only=recipient,
            audience_name=audience,
            as_planned=as_planned,
        )

    async def delivery(self, delivery_id: int) -> Delivery | None:
        return await self.store.get(delivery_id)

    def unsubscribed_address(self, token: str) -> str | None:
        """The address an unsubscribe link's token was made for; None if it is not ours."""
        return verify_unsubscribe_token(self.outbox.unsubscribe_secret, token)

    async def deliveries(
        self, *, state: State | None = None, event: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        """The ledger, newest first."""
        return await self.store.list_deliveries(state=state, event=event, limit=limit)

    async def attachment_sizes(self, digests: Sequence[str]) -> dict[str, int]:
        """The stored size of each attachment content named (the console's delivery page)."""
        return await self.store.attachment_sizes(digests)

    async def delivery_record(
        self,
        fmt: Format,
        *,
        event: str | None = None,
        reminder: str | None = None,
        audience: str | None = None,
        state: State | None = None,
        recipient: str | None = None,
        start: date | None = None,
        end: date | None = None,
    ) -> DeliveryRecord:
        """The delivery log as a record (台账) to export, oldest first: the rows the filters
        select; `start`/`end` are days of the planned send in the configured zone, both
        included. Iterate its `chunks()`. Raises SendError for an unknown audience."""
        keep: Callable[[ExportRow], bool] | None = None
        if audience is not None:
            found = self.schedule.audiences.get(audience)
            if found is None:
                raise SendError(f"unknown audience '{audience}' (未知受众)")
            if found.chat is not None:
                chat = found.chat
                keep = lambda row: row.channel == chat  # noqa: E731
            else:
                # Read off the loop: an audience file can be 100,000 rows.
                addresses = await asyncio.to_thread(
                    lambda: {r.email.casefold() for r in found.recipients()}
                )
                keep = lambda row: (  # noqa: E731
                    row.channel == EMAIL and row.recipient.casefold() in addresses
                )
        tz = self.settings.tz
        since = until = None
        if start is not None:
            since = datetime.combine(start, dtime(0), tz).timestamp()
        if end is not None:
            until = datetime.combine(end + timedelta(days=1), dtime(0), tz).timestamp()
        events = self.schedule.events.values()
        return DeliveryRecord(
            self.store.db,
            DeliveryFilter(
                state=state,
                event=event,
                reminder=reminder,
                recipient=recipient,
                since=since,
                until=until,
            ),
            fmt,
            tz=tz,
            titles={e.id: e.title for e in events},
            labels={(e.id, r.id): r.label for e in events for r in e.reminders},
            keep=keep,
            stamp=self.now().strftime("%Y%m%d-%H%M"),
        )

    async def waiting(self, ids: Sequence[int]) -> dict[int, Waiting]:
        """Of these rows, those waiting for a mail account's quota or pause: until when, why."""
        return await self.limits.waiting(ids)

    async def ledger_counts(self) -> dict[tuple[str, str], int]:
        """Ledger rows by (state, channel): `notifier status`."""
        return await self.store.count_by_state()

    async def waiting_rows(self, *, limit: int) -> list[tuple[Delivery, Waiting]]:
        """The rows waiting for a mail account's quota or pause, the first to go first."""
        waits = await self.limits.waiting_rows(limit=limit)
        out: list[tuple[Delivery, Waiting]] = []
        for row_id, wait in waits:
            row = await self.store.get(row_id)
            if row is not None:
                out.append((row, wait))
        return out

    async def waiting_summary(self) -> tuple[int, float | None]:
        """How many rows wait for a quota or pause, and when the first goes (None: none)."""
        return await self.limits.first_wait()

    async def suppressed_in(self, audience_name: str) -> int:
        """How many of an outside audience's addresses are on the suppression list (the send
        skips them); 0 for a staff audience, whose mail still goes."""
        audience = self.schedule.audiences[audience_name]
        if not audience.external or audience.chat is not None:
            return 0
        listed = {e.address for e in await self.suppressions.entries(limit=SUPPRESSED_READ)}
        if not listed:
            return 0

        def count() -> int:  # a CSV audience may be 100,000 rows: off the loop
            return sum(1 for r in audience.recipients() if r.email.strip().lower() in listed)

        return await asyncio.to_thread(count)

    async def suppressed_addresses(self, *, limit: int = 500) -> list[Suppression]:
        """The suppression list, the latest bounce first."""
        return await self.suppressions.entries(limit=limit)

    async def unsuppress(self, address: str, *, who: Who | None = None) -> bool:
        """Take an address off the suppression list (outreach mails it again). With `who`
        (the admin API), the removal is audited here; the console audits its own."""
        removed = await self.suppressions.remove(address)
        if removed:
            log.info("address taken off the suppression list", extra={"action": "unsuppressed"})
            if who is not None:
                await self.console.audit(
                    "unsuppress",
                    role=who.role,
                    target=f"email:{address.strip().lower()}",
                    detail="admin API",
                    client=who.client,
                    now=self.clock(),
                )
        return removed

    async def unsubscribe(self, address: str, *, source: str) -> None:
        await self.store.unsubscribe(address, now=self.clock(), source=source)

    # --- planning (planning.py) ---

    async def prepare(self) -> None:
        """Make the rows due soon (and catch up after downtime), then wake the workers."""
        await self.planning.prepare()

    async def replan(self) -> None:
        """Materialize what is due, and set the timer for the sends of the coming days."""
        await self.planning.replan()

    def plan_soon(self, *, replan: bool = False) -> None:
        """Prepare (or replan) in the background, retrying through database faults."""
        self.planning.soon(replan=replan)

    def upcoming(self, since: datetime, until: datetime) -> list[PlannedSend]:
        return self.planning.upcoming(since, until)

    def unmade_sends(self) -> list[Unmade]:
        """The sends the last planning pass could not make, by send time (/readyz, console)."""
        return self.planning.unmade_sends()

    def db_problem(self) -> str | None:
        """What the worker or the planner last met from the database while it lasts."""
        workers = [w for w in (self._worker, self._chat_worker) if w is not None]
        planning = self._planning.error if self._planning is not None else None
        return next((w.db_error for w in workers if w.db_error), None) or planning

    async def _timer_prepare(self) -> None:
        self.plan_soon()

    async def _timer_replan(self) -> None:
        self.plan_soon(replan=True)

    @staticmethod
    async def _summarise_logs() -> None:
        while True:
            await asyncio.sleep(REPEAT_WINDOW_SECONDS)
            flush_repeats()

    # --- editing the calendar: the console's use cases live on `editor` (editor.py) ---

    # --- reload ---

    def load_files(self) -> Loaded:
        """Read and check schedules, templates and hook secrets, changing nothing: safe to run
        in a worker thread (files, env and pure checks only; no store, no loop)."""
        schedule, renderer, warnings = load_config(self.settings, now=self.now())
        return Loaded(schedule, renderer, warnings, load_hook_secrets(self.settings, schedule))

    def apply(self, loaded: Loaded) -> None:
        """Swap the running config for `loaded` (on the loop: the workers read it there)."""
        schedule = loaded.schedule
        self.outbox.config = RunningConfig(schedule, loaded.renderer)
        self.hook_secrets = loaded.hook_secrets
        self.channels.build(schedule.channels)
        self._remask()
        self._claim_kinds()
        self.warnings = loaded.warnings
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

    def reject(self, errors: list[str]) -> None:
        """Keep the running config; say why the files on disk were not taken."""
        self.config_errors = errors
        self.reload_failed_at = self.clock()
        self.metrics.config_errors.set(len(errors))
        for line in errors:
            log.error(line, extra={"action": "reload_rejected"})

    def reload_crashed(self, exc: BaseException) -> None:
        """A reload died of something other than a config error: keep the running config
        and show the failure where config errors show."""
        frames = traceback.extract_tb(exc.__traceback__)
        at = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        self.config_errors = [
            f"{self.settings.schedules_dir}: (reload): the reload failed{at}: {brief(exc)}; "
            "the running config is the last good one (重新加载失败，仍使用上次有效配置)"
        ]
        self.reload_failed_at = self.clock()
        self.metrics.config_errors.set(1)
        log.error(
            "config reload failed; the last good config is kept",
            extra={"action": "config_reload_failed", "error": brief(exc), "at": at.strip()},
        )

    def reload(self) -> bool:
        """Re-read schedules, templates and hook secrets on the caller's thread; keep the
        running config if they are invalid. The service's own reloads go off the loop."""
        return self._reloader.reload()

    async def reload_off_loop(self) -> bool:
        return await self._reloader.off_loop()

    def request_reload(self) -> asyncio.Task[None]:
        """Reload soon, from a signal handler (SIGHUP): a secret rotated in `.env` applies."""
        return self._reloader.request()

    async def reload_now(self) -> bool:
        """Reload now; if it took, do what a reload does (tell the admins what moved,
        replan). For the console's holiday import, which must not wait for the watcher and
        takes its file back itself when the reload is refused."""
        ok = await self.reload_off_loop()
        if ok:
            await self.after_reload(ok)
        return ok

    async def announce_rejected(self) -> None:
        await self.notices.reload_rejected(self.config_errors, self.clock())

    async def after_reload(self, ok: bool) -> None:
        """Tell the admins what the reload changed (or why it was refused), then replan."""
        if ok:
            await self.editor.notice_outside_edits_logged()
            await self.notices.workdays_changed(self.clock())
            self.plan_soon(replan=True)
        else:
            await self.notices.reload_rejected(self.config_errors, self.clock())

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
        self._timer = Timer(
            prepare=self._timer_prepare, replan=self._timer_replan, tz=s.tz, metrics=self.metrics
        )
        self._timer.start()
        self.planning.timer = self._timer
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
        for source in workday_sources(self.schedule, self.now().date()):
            log.info(
                f"workday data {source.year}: {source.in_words()}",
                extra={"action": "workday_data", "year": source.year, "source": source.kind},
            )
        for line in self.warnings:
            log.warning(line, extra={"action": "config_warning"})
        tasks: list[asyncio.Task[None]] = []
        runner: Listener | None = None
        try:
            try:
                await self.notices.workdays_changed(self.clock())
                await self.replan()
            except StoreError as exc:
                log.warning(
                    "database unavailable at start; planning retries",
                    extra={"action": "db_retry", "during": "plan", "error": str(exc)},
                )
                self.plan_soon(replan=True)
            self.planning.log_next()
            tasks.append(asyncio.create_task(self._summarise_logs(), name="notifier-logs"))
            if s.http.enabled and serve is not None:
                runner = await serve(self)
            if s.watch:
                tasks.append(asyncio.create_task(self._reloader.watch(stop), name="notifier-watch"))
            for reader in self.bounce_readers():
                task = asyncio.create_task(reader.run(stop), name=f"bounces-{reader.account}")
                tasks.append(task)
            if ready is not None:
                ready.set()
            await asyncio.gather(
                self.worker.run(stop, drain_timeout=s.shutdown_timeout),
                self.chat_worker.run(stop, drain_timeout=s.shutdown_timeout),
            )
        finally:
            self._timer.shutdown()
            if runner is not None:
                await runner.cleanup()
            await self.planning.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            flush_repeats()
            log.info("notifier stopped", extra={"action": "stopped"})

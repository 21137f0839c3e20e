"""The delivery worker: claim due rows with a lease, send them, record each outcome.

Order of effects, so that a kill at any point loses nothing: the claim is committed before
the send; the outcome is committed right after it (group commit: whatever finished while the
previous commit ran goes in the next one). A kill between an SMTP 250 and that commit leaves
the row `sending`; when its lease expires it is sent again with the same Message-ID. That is
the only duplicate possible, and at most one per message in flight at the kill.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from notifier.channels.base import Channel, TransportError
from notifier.config import DeliverySettings
from notifier.errors import StoreError
from notifier.metrics import Metrics
from notifier.models import Delivery, Outcome, State
from notifier.store import Store

log = logging.getLogger(__name__)


def backoff(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): spreads retry storms."""
    return float(rand() * min(cap, base * 2.0 ** max(0, attempt - 1)))


# A row's channel and the pace that channel keeps (None: no pace), chosen per row.
Router = Callable[[Delivery], tuple[Channel, AsyncLimiter | None]]


@dataclass
class WorkerStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    expired: int = 0


class DeliveryWorker:
    def __init__(
        self,
        *,
        store: Store,
        channel: Channel,
        settings: DeliverySettings,
        concurrency: int,
        worker_id: str,
        send_timeout: float = 30.0,
        rate_limit: float = 0.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        router: Router | None = None,
        kind: str | None = None,
    ) -> None:
        self.store = store
        self.channel = channel
        # Chat rows: `router` names each row's channel and its pace; `kind` ("email", "chat")
        # restricts the rows this worker claims (one worker per kind, lanes not shared).
        self.router = router
        self.kind = kind
        self.settings = settings
        self.concurrency = concurrency
        self.send_timeout = send_timeout
        # Rate limiting lives here, not in the channel: the lease check below must come after
        # every wait, right before the send.
        self._limiter = AsyncLimiter(rate_limit, 1) if rate_limit > 0 else None
        self.worker_id = worker_id
        self.metrics = metrics
        self.clock = clock
        self.rand = rand
        self.stats = WorkerStats()
        self._wake = asyncio.Event()
        self._results: list[Outcome] = []
        self._results_ready = asyncio.Event()
        # Claimed rows not yet finished (queued for a lane, or being sent), by id.
        self._held: dict[int, Delivery] = {}
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._lanes: list[asyncio.Task[None]] = []
        self._low = asyncio.Event()  # held <= capacity // 2: time to claim more
        self._idle = asyncio.Event()  # nothing held
        self._closing = False

    @property
    def capacity(self) -> int:
        """Rows held at once. No more than can start soon: a claimed row's lease is running."""
        return min(self.settings.batch_size, 4 * self.concurrency)

    def wake(self) -> None:
        """New rows may be due: look now instead of at the next poll."""
        self._wake.set()

    # --- one message ---

    def _outcome(self, row: Delivery, error: TransportError | None, now: float) -> Outcome:
        if error is None:
            return Outcome(row.id, State.SENT, now)
        if error.permanent:
            return Outcome(row.id, State.FAILED, now, error=error.message)
        s = self.settings
        if row.attempts >= s.max_attempts or now - row.due_at > s.give_up_after:
            return Outcome(row.id, State.DEAD, now, error=f"gave up: {error.message}")
        delay = backoff(row.attempts, base=s.base_delay, cap=s.max_delay, rand=self.rand)
        if error.retry_after is not None:  # the platform's penalty (a throttled robot)
            delay = max(delay, error.retry_after)
        return Outcome(row.id, State.PENDING, now, error=error.message, retry_at=now + delay)

    def _lease_too_short(self, row: Delivery) -> bool:
        """True if the send could outlive our lease (the row waited too long for a slot).

        Another worker may claim a row once its lease has run out; sending it then could
        make a second copy without any crash. Such a row is handed back unsent (if the
        claim is still ours) and claimed again, by us or by another instance.
        """
        return row.lease_until is not None and self.clock() + self.send_timeout > row.lease_until

    async def _send_one(self, row: Delivery) -> None:
        channel, pace = self.router(row) if self.router is not None else (self.channel, None)
        if pace is not None:
            await pace.acquire()
        if self._limiter is not None:
            await self._limiter.acquire()
        if self._lease_too_short(row):
            self.stats.expired += 1
            await self.store.release([row], now=self.clock())
            log.warning(
                "lease too short after waiting for a connection; handed back",
                extra={"action": "lease_expired", "delivery": row.id},
            )
            return
        started = self.clock()
        error: TransportError | None = None
        try:
            await channel.send(row)
        except TransportError as exc:
            error = exc
        outcome = self._outcome(row, error, self.clock())
        self._count(row, outcome, started)
        self._results.append(outcome)
        self._results_ready.set()

    def _count(self, row: Delivery, outcome: Outcome, started: float) -> None:
        st = self.stats
        if outcome.state is State.SENT:
            st.sent += 1
        elif outcome.state is State.PENDING:
            st.retried += 1
        elif outcome.state is State.FAILED:
            st.failed += 1
        elif outcome.state is State.DEAD:
            st.dead += 1
        if outcome.error:
            log.warning(
                "send failed",
                extra={
                    "action": f"send_{outcome.state.value}",
                    "delivery": row.id,
                    "attempt": row.attempts,
                    "error": outcome.error,
                },
            )
        if self.metrics is not None:
            self.metrics.observe_send(row.channel, outcome.state.value, outcome.at - started)
            if outcome.state is State.SENT:
                self.metrics.observe_lateness(outcome.at - row.due_at)

    # --- the loop ---

    async def _recorder(self) -> None:
        """Commit outcomes as they come: each commit takes everything finished meanwhile.

        Never cancelled mid-commit: `_stop_recorder` asks it to finish instead.
        """
        while not (self._closing and not self._results):
            await self._results_ready.wait()
            self._results_ready.clear()
            await self._flush()

    async def _stop_recorder(self, recorder: asyncio.Task[None]) -> None:
        self._closing = True
        self._results_ready.set()
        await recorder

    async def _flush(self) -> None:
        while self._results:
            batch, self._results = self._results, []
            try:
                await self.store.record(batch)
            except StoreError as exc:
                # Keep the outcomes and try again: losing them would resend sent mail.
                self._results = batch + self._results
                log.error(
                    "recording outcomes failed",
                    extra={"action": "record_failed", "error": str(exc)},
                )
                await asyncio.sleep(min(1.0, self.settings.poll_interval))

    async def _skip_unsubscribed(self, rows: list[Delivery], now: float) -> list[Delivery]:
        external = [r.recipient for r in rows if r.external]
        if not external:
            return rows
        gone = await self.store.unsubscribed(external)
        if not gone:
            return rows
        keep = []
        skipped = []
        for r in rows:
            if r.external and r.recipient.lower() in gone:
                skipped.append(Outcome(r.id, State.SKIPPED, now, error="recipient unsubscribed"))
            else:
                keep.append(r)
        self.stats.skipped += len(skipped)
        await self.store.record(skipped)
        return keep

    async def _claim(self, now: float) -> list[Delivery]:
        room = self.capacity - len(self._held)
        if room <= 0:
            return []
        rows = await self.store.claim(
            now=now,
            limit=room,
            lease_seconds=self.settings.lease_seconds,
            worker=self.worker_id,
            kind=self.kind,
        )
        rows = await self._skip_unsubscribed(rows, now) if rows else rows
        for row in rows:
            self._held[row.id] = row
            self._queue.put_nowait(row)
        if rows:
            self._idle.clear()
        return rows

    # --- lanes: one per connection, each sends one message at a time ---

    async def _lane(self) -> None:
        while True:
            row = await self._queue.get()
            try:
                await self._send_one(row)
            except Exception:
                # A bug, not a send failure: hand the row back rather than lose the lane.
                log.exception("send crashed", extra={"action": "send_crashed", "delivery": row.id})
                await self.store.release([row], now=self.clock())
            # Cancelled mid-send (shutdown), the row stays held and is handed back.
            self._held.pop(row.id, None)
            if len(self._held) <= self.capacity // 2:
                self._low.set()
            if not self._held:
                self._idle.set()

    def _start_lanes(self) -> None:
        self._idle.set()
        self._lanes = [
            asyncio.create_task(self._lane(), name=f"notifier-lane-{i}")
            for i in range(self.concurrency)
        ]

    async def _wait_low_water(self) -> None:
        """Claim again only below the low-water mark: one claim per half batch, not one
        transaction per finished send."""
        self._low.clear()
        if len(self._held) > self.capacity // 2:
            await self._low.wait()

    async def _stop_lanes(self, within: float | None) -> None:
        """Hand back rows not started; let sends in progress finish, up to `within`."""
        queued: list[Delivery] = []
        while not self._queue.empty():
            queued.append(self._queue.get_nowait())
        if queued:
            for row in queued:
                self._held.pop(row.id, None)
            await self.store.release(queued, now=self.clock())
        if self._held:
            try:
                await asyncio.wait_for(self._idle.wait(), within)
            except TimeoutError:
                pass
        for lane in self._lanes:
            lane.cancel()
        await asyncio.gather(*self._lanes, return_exceptions=True)
        self._lanes = []
        unfinished = list(self._held.values())
        self._held.clear()
        if unfinished:
            await self.store.release(unfinished, now=self.clock())
        if queued or unfinished:
            log.warning(
                "released claimed sends",
                extra={"action": "released", "count": len(queued) + len(unfinished)},
            )

    async def _idle_wait(self, now: float) -> None:
        nxt = await self.store.next_due_at(kind=self.kind)
        timeout = self.settings.poll_interval
        if nxt is not None:
            timeout = max(0.0, min(timeout, nxt - now))
        if timeout > 0:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
        self._wake.clear()

    @staticmethod
    async def _first(*waits: Awaitable[object]) -> None:
        """Return when the first of `waits` is done; cancel the others."""
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    async def run(self, stop: asyncio.Event, *, drain_timeout: float = 10.0) -> None:
        """Deliver until `stop` is set, then finish what is in flight and record it.

        Claimed rows not yet started are handed back at once; sends still running after
        `drain_timeout` are cancelled and handed back (pending).
        """
        self._closing = False
        recorder = asyncio.create_task(self._recorder(), name="notifier-recorder")
        self._start_lanes()
        try:
            while not stop.is_set():
                if len(self._held) > self.capacity // 2:
                    await self._first(self._wait_low_water(), stop.wait())
                    continue
                now = self.clock()
                if await self._claim(now):
                    continue
                await self._first(self._idle_wait(now), stop.wait())
        finally:
            await self._stop_lanes(drain_timeout)
            await self._stop_recorder(recorder)

    async def run_until_idle(self) -> WorkerStats:
        """Burst mode (tests, `notifier send`): deliver everything due now, then return.

        Returns the counts of this burst alone.
        """
        self.stats = WorkerStats()
        self._closing = False
        recorder = asyncio.create_task(self._recorder())
        self._start_lanes()
        try:
            while True:
                if len(self._held) > self.capacity // 2:
                    await self._wait_low_water()
                    continue
                if await self._claim(self.clock()):
                    continue
                if not self._held:
                    break
                await self._idle.wait()
        finally:
            await self._stop_lanes(None)
            await self._stop_recorder(recorder)
        return self.stats

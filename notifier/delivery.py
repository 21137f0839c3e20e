"""The delivery worker: claim due rows with a lease, send them, record each outcome.

Order of effects, so that a kill at any point loses nothing: the claim is committed before
the send; the outcome is committed right after it (group commit: whatever finished while the
previous commit ran goes in the next one), and a lane starts its next send only once its last
outcome is committed. A kill between an SMTP 250 and that commit leaves the row `sending`; when
its lease expires it is sent again with the same Message-ID. That is the only duplicate
possible: at most one per lane (connection) at the kill, even while the database is down.

A live worker renews the leases of the rows it holds (`_heartbeat`), so leases are short and
sends are not: a send is bounded by the channel's own timeout, a lease by nothing but the
worker's life. Database errors are weather: every loop here backs off and tries again.

A fair worker (the chat worker: many robots, each with its own pace) claims a paced robot's
row only when that robot's pace has room, and holds at most `PACED_HOLD` of its rows at once;
the other rows of its backlog stay in the ledger. So one robot's backlog of 200 at 20 a minute
neither fills the claim nor sits in every lane waiting on its pace, and another robot's row
due meanwhile is claimed by the next claim and finds a free lane. The lanes stay as they are
(one queue; the pace is still taken right before the send, so sends stay spaced by it), and
the fairness lives in the claim (`Store.claim(per_channel=...)`): smaller than queues per
channel in the worker, and rows a worker does not send soon are not hidden from the others.
The worker wakes for the claim when a robot it left out has room again: when one of its held
rows is done (`_unhold`), or when its pace's gap has run out (a timer, never a poll loop).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from aiolimiter import AsyncLimiter

from notifier.channels.base import Channel, TransportError
from notifier.config import DeliverySettings
from notifier.constants import (
    DB_RETRY_BASE_SECONDS,
    DB_RETRY_CAP_SECONDS,
    LANE_CANCEL_RETRY_SECONDS,
    LEASE_RENEW_FRACTION,
    PACE_ROUNDING_SECONDS,
    PACED_HOLD,
)
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
        rate_limit: float = 0.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        router: Router | None = None,
        kind: str | None = None,
        fair: bool = False,
        mask: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        # Applied to every error text before it is logged or recorded: servers echo secrets.
        self.mask = mask
        self.channel = channel
        # Chat rows: `router` names each row's channel and its pace; `kind` ("email", "chat")
        # restricts the rows this worker claims (one worker per kind, lanes not shared).
        self.router = router
        self.kind = kind
        # Fair between channels (the chat worker; see the module docstring). The email worker
        # serves one channel, and keeps its tuned claim.
        self.fair = fair
        self._seen: dict[str, Delivery] = {}  # a row of each channel claimed, to route by name
        self._paced_at: dict[str, tuple[AsyncLimiter, float]] = {}  # last pace taken (loop time)
        self._capped: set[str] = set()  # left out of the last claim for their held rows
        self._pace_bound: set[str] = set()  # left out of the last claim: their pace is full
        self._pace_wait: float | None = None  # seconds until the first of those has room
        self.settings = settings
        self.concurrency = concurrency
        # Rate limiting lives here, not in the channel: the lease check below must come after
        # every wait, right before the send.
        self._limiter = AsyncLimiter(rate_limit, 1) if rate_limit > 0 else None
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
        # One future per outcome in `_results`, resolved once it is committed.
        self._waiters: list[asyncio.Future[None]] = []
        self._committing: asyncio.Future[None] | None = None  # a commit is running
        self._give_up_at: float | None = None  # closing: stop retrying a failed record then
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._renewed = asyncio.Event()  # replaced after each renewal; lanes wait on it
        self._lost: set[int] = set()  # held rows whose lease another worker now has
        self._recording: set[int] = set()  # sent (or failed), outcome not yet committed
        #: The last database error of the worker's loops while it lasts, None once it works.
        self.db_error: str | None = None
        self._db_failures = 0

    @property
    def capacity(self) -> int:
        """Rows held at once. No more than can start soon: a claimed row's lease is running."""
        return min(self.settings.batch_size, 4 * self.concurrency)

    def wake(self) -> None:
        """New rows may be due: look now instead of at the next poll."""
        self._wake.set()

    @property
    def renew_every(self) -> float:
        """Seconds between lease renewals: a third of the lease, so one missed renewal is
        survivable."""
        return self.settings.lease_seconds * LEASE_RENEW_FRACTION

    # --- database weather ---

    def _db_down(self, what: str, exc: StoreError) -> float:
        """Note a database error; return how long to wait before trying again."""
        self._db_failures += 1
        self.db_error = str(exc)
        log.warning(
            "database unavailable; retrying",
            extra={"action": "db_retry", "during": what, "error": str(exc)},
        )
        return backoff(
            self._db_failures, base=DB_RETRY_BASE_SECONDS, cap=DB_RETRY_CAP_SECONDS, rand=self.rand
        )

    def _db_up(self) -> None:
        if self.db_error is not None:
            log.info(
                "database back",
                extra={"action": "db_back", "failures": self._db_failures},
            )
        self.db_error = None
        self._db_failures = 0

    # --- one message ---

    def _outcome(self, row: Delivery, error: TransportError | None, now: float) -> Outcome:
        if error is None:
            return Outcome(row.id, State.SENT, now)
        if self.mask is not None:
            error.message = self.mask(error.message)
        if error.permanent:
            return Outcome(row.id, State.FAILED, now, error=error.message)
        s = self.settings
        if row.attempts >= s.max_attempts or now - row.due_at > s.give_up_after:
            return Outcome(row.id, State.DEAD, now, error=f"gave up: {error.message}")
        delay = backoff(row.attempts, base=s.base_delay, cap=s.max_delay, rand=self.rand)
        if error.retry_after is not None:  # the platform's penalty (a throttled robot)
            delay = max(delay, error.retry_after)
        return Outcome(row.id, State.PENDING, now, error=error.message, retry_at=now + delay)

    async def _leased(self, row: Delivery) -> Delivery | None:
        """The row with its current lease once at least a renewal's worth of it is left;
        None if it is no longer ours (another worker claimed it after our lease ran out).

        Renewals keep every held row's lease ahead; only when they fail (the database is
        away) does a send wait here, so that a row is never sent on a lease that may run
        out mid-send and be claimed by another instance.
        """
        waited = False
        while True:
            if row.id in self._lost:
                self._lost.discard(row.id)
                return None
            current = self._held.get(row.id)
            if current is None:
                return None
            left = None if current.lease_until is None else current.lease_until - self.clock()
            if left is None or left >= self.renew_every:
                return current
            if not waited:
                waited = True
                self.stats.expired += 1
                log.warning(
                    "lease not renewed in time; the send waits for a renewal",
                    extra={"action": "lease_wait", "delivery": row.id},
                )
            await self._renewed.wait()

    async def _attempt(self, row: Delivery, channel: Channel) -> TransportError | None:
        """One send, bounded as a whole by the channel's own timeout (aiosmtplib's is per
        socket operation). Any exception is a failed attempt, retried with backoff and dead
        after the bounds: never a hand-back that could loop."""
        limit = channel.send_timeout
        try:
            async with asyncio.timeout(limit):
                await channel.send(row)
        except TransportError as exc:
            return exc
        except TimeoutError:
            return TransportError(f"timeout: the send took over {limit:g} s")
        except Exception as exc:
            return TransportError(f"unexpected {type(exc).__name__}: {exc}")
        return None

    async def _send_one(self, row: Delivery) -> None:
        channel, pace = self.router(row) if self.router is not None else (self.channel, None)
        if pace is not None:
            await pace.acquire()
            self._paced_at[row.channel] = (pace, asyncio.get_running_loop().time())
        if self._limiter is not None:
            await self._limiter.acquire()
        leased = await self._leased(row)
        if leased is None:
            return
        started = self.clock()
        error = await self._attempt(leased, channel)
        outcome = self._outcome(leased, error, self.clock())
        self._count(leased, outcome, started)
        # Done with: no longer held (a stop must not hand back a sent row), only recording.
        self._unhold(row)
        self._recording.add(row.id)
        try:
            await self._submit(outcome)
        finally:
            self._recording.discard(row.id)

    async def _submit(self, outcome: Outcome) -> None:
        """Record an outcome; return once it is committed. A lane's next send starts only
        then, so a kill leaves at most one unrecorded 250 per lane.

        Group commit without a hop to another task: a lane that finds no commit running
        commits everything finished so far; lanes finishing meanwhile wait for that commit,
        and the first of them to wake commits the next batch.
        """
        done = asyncio.get_running_loop().create_future()
        self._results.append(outcome)
        self._waiters.append(done)
        # One loop iteration, so that lanes whose 250 came in the same one share the commit:
        # without it SQLite committed once per message (bench/delivery.py: 2.6x slower).
        await asyncio.sleep(0)
        while not done.done():
            if self._committing is not None:
                await asyncio.shield(self._committing)
            else:
                await self._commit_pending()

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

    async def _stop_recorder(self, recorder: asyncio.Task[None], within: float | None) -> None:
        self._closing = True
        self._give_up_at = None if within is None else self.clock() + within
        self._results_ready.set()
        await recorder

    async def _flush(self) -> None:
        while self._results:
            if self._committing is not None:
                await asyncio.shield(self._committing)
            else:
                await self._commit_pending()

    async def _commit_pending(self) -> None:
        """Commit the outcomes queued now (one commit at a time) and resolve their waiters;
        through a database outage, retry until it is back (at shutdown, until `_give_up_at`)."""
        batch, self._results = self._results, []
        waiters, self._waiters = self._waiters, []
        committing = self._committing = asyncio.get_running_loop().create_future()
        try:
            while not await self._record(batch):
                if self._closing and self._give_up_at is not None:
                    if self.clock() > self._give_up_at:
                        log.error(
                            "outcomes not recorded at shutdown (database unavailable);"
                            " these rows will be sent again when their lease runs out",
                            extra={"action": "record_abandoned", "count": len(batch)},
                        )
                        break
        except BaseException:
            # The committing lane was cancelled (shutdown): the recorder's last flush takes
            # the batch; recording it twice is harmless (updates guarded by state).
            self._results = batch + self._results
            self._waiters = waiters + self._waiters
            self._results_ready.set()
            raise
        finally:
            self._committing = None
            committing.set_result(None)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _record(self, batch: list[Outcome]) -> bool:
        """Commit one batch of outcomes; on a database error wait (backoff) and say False.

        The batch is kept and tried again: losing it would resend sent mail.
        """
        try:
            await self.store.record(batch)
        except StoreError as exc:
            await asyncio.sleep(self._db_down("record", exc))
            return False
        self._db_up()
        return True

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
        if self.fair:
            rows = await self.store.claim(
                now=now,
                limit=room,
                lease_seconds=self.settings.lease_seconds,
                kind=self.kind,
                per_channel=PACED_HOLD,
                rooms=self._rooms(room),
            )
        else:
            rows = await self.store.claim(
                now=now, limit=room, lease_seconds=self.settings.lease_seconds, kind=self.kind
            )
        rows = await self._skip_unsubscribed(rows, now) if rows else rows
        for row in rows:
            if self.fair:
                self._seen.setdefault(row.channel, row)
            if row.id in self._recording:
                continue  # sent here; the recorder's commit (guarded by state) settles it
            # Our own claim whose lease ran out while the database was away: the row is
            # queued or being sent already; keep the new lease, do not queue it twice.
            known = row.id in self._held
            self._held[row.id] = row
            self._lost.discard(row.id)
            if not known:
                self._queue.put_nowait(row)
        if rows:
            self._idle.clear()
        return rows

    def _rooms(self, room: int) -> dict[str, int]:
        """How many rows of each channel seen the next claim may take; a channel not seen yet
        gets `PACED_HOLD` (it may be paced), until its first row says what it is.

        A paced channel: none while it holds `PACED_HOLD` rows (`_capped`: woken by
        `_unhold`) or while its pace is full (`_pace_bound`: woken by `_pace_wait`); an
        unpaced one: any number. Routed afresh each time, so a reload's new pace counts.
        """
        assert self.router is not None, "a fair worker routes its rows"
        held = Counter(r.channel for r in self._held.values())
        clock = asyncio.get_running_loop().time()
        rooms: dict[str, int] = {}
        capped: set[str] = set()
        bound: dict[str, float] = {}
        for name, sample in self._seen.items():
            _, pace = self.router(sample)
            if pace is None:
                rooms[name] = room
            elif held[name] >= PACED_HOLD:
                rooms[name] = 0
                capped.add(name)
            elif not pace.has_capacity():
                rooms[name] = 0
                bound[name] = self._room_in(name, pace, clock)
            else:
                rooms[name] = PACED_HOLD - held[name]
        # Set before the claim's await: a row done meanwhile finds its channel here.
        self._capped, self._pace_bound = capped, set(bound)
        self._pace_wait = min(bound.values(), default=None)
        return rooms

    def _room_in(self, name: str, pace: AsyncLimiter, clock: float) -> float:
        """Seconds until a full pace has room again: one drip of its bucket after our last
        take; a drip from now if someone else took it (then it has room within a drip)."""
        drip = pace.time_period / pace.max_rate
        taken = self._paced_at.get(name)
        if taken is not None and taken[0] is pace:
            wait = taken[1] + drip - clock
            if wait > 0:
                return wait + PACE_ROUNDING_SECONDS
        return max(drip, PACE_ROUNDING_SECONDS)

    def _unhold(self, row: Delivery) -> None:
        """The row is no longer held. If its channel was left out of the last claim for the
        rows it held, it has room now: claim again."""
        self._held.pop(row.id, None)
        if row.channel in self._capped:
            self._capped.discard(row.channel)
            self._wake.set()

    def _left_out(self) -> set[str]:
        """The channels the last claim left out for now (their rows may well be due)."""
        return self._capped | self._pace_bound

    # --- leases that follow the work ---

    async def _heartbeat(self) -> None:
        """Renew the leases of every held row (queued or being sent) every `renew_every`."""
        while True:
            await asyncio.sleep(self.renew_every)
            if self._held:
                await self._renew()

    async def _renew(self) -> None:
        rows = list(self._held.values())
        try:
            renewed = await self.store.renew(
                rows, now=self.clock(), lease_seconds=self.settings.lease_seconds
            )
        except StoreError as exc:
            self._db_down("renew", exc)
            return
        self._db_up()
        lost = 0
        for row in rows:
            if self._held.get(row.id) is not row:
                continue  # finished, or claimed again meanwhile: the answer is about the past
            until = renewed.get(row.id)
            if until is not None:
                self._held[row.id] = replace(row, lease_until=until)
            else:
                # Recorded by another worker, or its lease ran out and another claimed it.
                self._unhold(row)
                self._lost.add(row.id)
                lost += 1
        if lost:
            log.warning(
                "leases lost to another worker; those rows are not sent here",
                extra={"action": "lease_lost", "count": lost},
            )
            self._update_marks()
        wake, self._renewed = self._renewed, asyncio.Event()
        wake.set()

    def _update_marks(self) -> None:
        if len(self._held) <= self.capacity // 2:
            self._low.set()
        if not self._held:
            self._idle.set()

    # --- lanes: one per connection, each sends one message at a time ---

    async def _lane(self) -> None:
        while True:
            row = await self._queue.get()
            try:
                await self._send_one(row)
            except Exception:
                # A bug here, not in the channel: count it as a failed attempt (never a
                # hand-back, which would claim the row again at once, in a loop).
                log.exception("send crashed", extra={"action": "send_crashed", "delivery": row.id})
                now = self.clock()
                self._results.append(self._outcome(row, TransportError("internal error"), now))
                self._results_ready.set()
            # Cancelled mid-send (shutdown), the row stays held and is handed back.
            self._unhold(row)
            self._lost.discard(row.id)
            self._update_marks()

    def _start_lanes(self) -> None:
        self._idle.set()
        self._capped, self._pace_bound, self._pace_wait = set(), set(), None
        self._lanes = [
            asyncio.create_task(self._lane(), name=f"notifier-lane-{i}")
            for i in range(self.concurrency)
        ]
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="notifier-leases")

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
            row = self._queue.get_nowait()
            current = self._held.pop(row.id, None)
            if current is not None:
                queued.append(current)  # with its latest lease: release is guarded by it
        if queued:
            await self._release_at_stop(queued)
        if self._held:
            try:
                await asyncio.wait_for(self._idle.wait(), within)
            except TimeoutError:
                pass
        await self._cancel_all(self._lanes)
        self._lanes = []
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
            self._heartbeat_task = None
        unfinished = list(self._held.values())
        self._held.clear()
        self._lost.clear()
        if unfinished:
            await self._release_at_stop(unfinished)
        if queued or unfinished:
            log.warning(
                "released claimed sends",
                extra={"action": "released", "count": len(queued) + len(unfinished)},
            )

    @staticmethod
    async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
        """Cancel the lanes and wait until they end, cancelling again any that goes on.

        A cancellation can be swallowed below us: Python 3.11's `asyncio.wait_for` (used by
        aiolimiter's pace, psycopg_pool) returns the result when its future completes as the
        cancel arrives. A lane that swallowed one waits on its queue for good, and a single
        cancel-then-gather hung `run_until_idle` (seen with a paced chat channel).
        """
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=LANE_CANCEL_RETRY_SECONDS)
        await asyncio.gather(*tasks, return_exceptions=True)  # retrieve what they raised

    async def _release_at_stop(self, rows: list[Delivery]) -> None:
        try:
            await self.store.release(rows, now=self.clock())
        except StoreError as exc:
            # Not fatal: their leases run out and they are claimed again (no renewal now).
            log.warning(
                "could not hand back claimed rows (database unavailable)",
                extra={"action": "release_failed", "count": len(rows), "error": str(exc)},
            )

    async def _idle_wait(self, now: float) -> None:
        left_out = self._left_out()
        nxt = await self.store.next_due_at(kind=self.kind, exclude=left_out)
        timeout = self.settings.poll_interval
        if nxt is not None:
            timeout = max(0.0, min(timeout, nxt - now))
        if self._pace_bound and self._pace_wait is not None:
            timeout = min(timeout, self._pace_wait)
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
                try:
                    claimed = await self._claim(now)
                    self._db_up()
                    if claimed:
                        continue
                    await self._first(self._idle_wait(now), stop.wait())
                except StoreError as exc:
                    # Weather: wait and try again; the service never ends on its own.
                    await self._first(asyncio.sleep(self._db_down("claim", exc)), stop.wait())
        finally:
            await self._stop_lanes(drain_timeout)
            await self._stop_recorder(recorder, drain_timeout)

    async def _due_now(self, now: float) -> bool:
        """Is any row of the worker's kind claimable at `now`, left out or not?"""
        nxt = await self.store.next_due_at(kind=self.kind)
        return nxt is not None and nxt <= now

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
                now = self.clock()
                if await self._claim(now):
                    continue
                pace_wait = self._pace_wait if self._pace_bound else None
                if not self._held:
                    # Done, unless a paced robot's next row is due: claim it once its pace
                    # has room (nothing else can come of waiting).
                    if pace_wait is None or not await self._due_now(now):
                        break
                    await asyncio.sleep(pace_wait)
                    continue
                # Idle, or a channel left out has room again (a held row done, a pace's gap).
                waits: list[Awaitable[object]] = [self._idle.wait(), self._wake.wait()]
                if pace_wait is not None:
                    waits.append(asyncio.sleep(pace_wait))
                await self._first(*waits)
                self._wake.clear()
        finally:
            await self._stop_lanes(None)
            await self._stop_recorder(recorder, self.settings.lease_seconds)
        return self.stats

"""The delivery worker: claim due rows with a lease, queue them, send each on a lane.

Order of effects, so that a kill at any point loses nothing: the claim is committed before
the send; the outcome is committed right after it (`recorder.GroupCommit`), and a lane's next
send is not finished before that commit: SMTP sends its envelope and body meanwhile and holds
the final dot until the commit is done (`channels.smtp_wire`); other channels wait for it
before they send. A kill between an SMTP 250 and that commit leaves the row `sending`; when
its lease expires it is sent again with the same Message-ID. That is the only duplicate
possible: at most one per lane (connection) at the kill, even while the database is down
(the next message on that connection has no final dot, and the server discards it).

A live worker renews the leases of the rows it holds (`_heartbeat`), so leases are short and
sends are not: a send is bounded by the channel's own timeout, a lease by nothing but the
worker's life. Database errors are weather (`weather.DbWeather`): every loop here backs off
and tries again. The chat worker is fair between robots (`fairness.FairPacing`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from aiolimiter import AsyncLimiter

from notifier.channels.base import Channel, NotSent, TransportError
from notifier.config import DeliverySettings
from notifier.constants import (
    CLAIM_ROWS_PER_LANE,
    LANE_CANCEL_RETRY_SECONDS,
    LEASE_RENEW_FRACTION,
    OUTSIDE_COMMITS_POLL_SECONDS,
    PACED_HOLD,
    READY_HOLD_SECONDS,
)
from notifier.delivery.fairness import FairPacing, Router
from notifier.delivery.outcomes import WorkerStats, outcome_of
from notifier.delivery.quotas import QuotaGate
from notifier.delivery.recorder import GroupCommit
from notifier.delivery.weather import DbWeather
from notifier.errors import StoreError
from notifier.ledger.models import Delivery, Outcome, State
from notifier.ledger.store import Store
from notifier.ledger.suppressions import SuppressionStore
from notifier.metrics import Metrics

log = logging.getLogger(__name__)


__all__ = ["DeliveryWorker", "Router", "WorkerStats"]


def _both(first: asyncio.Future[None], second: asyncio.Future[None]) -> asyncio.Future[None]:
    """A future done once `first` and `second` are (no task, unlike `gather`)."""
    both = asyncio.get_running_loop().create_future()

    def check(_: object) -> None:
        if first.done() and second.done() and not both.done():
            both.set_result(None)

    first.add_done_callback(check)
    second.add_done_callback(check)
    return both


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
        self.pacing = FairPacing(router)
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
        self.weather = DbWeather(rand)
        self.recorder = GroupCommit(store=store, weather=self.weather, clock=clock)
        # Claimed rows not yet finished (queued for a lane, or being sent), by id.
        self._held: dict[int, Delivery] = {}
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._lanes: list[asyncio.Task[None]] = []
        self._low = asyncio.Event()  # held <= capacity // 2: time to claim more
        self._idle = asyncio.Event()  # nothing held
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._renewed = asyncio.Event()  # replaced after each renewal; lanes wait on it
        self._lost: set[int] = set()  # held rows whose lease another worker now has
        # Attempted here, by id: the commit of the outcome (see `_claim`).
        self._recording: dict[int, asyncio.Future[None]] = {}
        # A mail account's shared quotas and throttle pauses (delivery/quotas.py); None: none.
        self.quotas: QuotaGate | None = None
        # Addresses that bounced: outreach skips them, a new bounce adds one; None: no list.
        self.suppressions: SuppressionStore | None = None
        self._lease_lock = asyncio.Lock()  # a renewal, or a row put back by its lease

    @property
    def capacity(self) -> int:
        """Rows held at once. No more than can start soon: a claimed row's lease is running."""
        return min(self.settings.batch_size, CLAIM_ROWS_PER_LANE * self.concurrency)

    def wake(self) -> None:
        """New rows may be due: look now instead of at the next poll."""
        self._wake.set()

    @property
    def renew_every(self) -> float:
        """Seconds between lease renewals: a third of the lease, so one missed renewal is
        survivable."""
        return self.settings.lease_seconds * LEASE_RENEW_FRACTION

    @property
    def db_error(self) -> str | None:
        """The last database error of the worker's loops while it lasts, None once it works."""
        return self.weather.error

    # --- one message ---

    def _outcome(self, row: Delivery, error: TransportError | None, now: float) -> Outcome:
        if error is not None and self.mask is not None:
            error.message = self.mask(error.message)
        return outcome_of(row, error, now, self.settings, self.rand)

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

    async def _attempt(
        self, row: Delivery, channel: Channel, last: asyncio.Future[None] | None
    ) -> TransportError | None:
        """One send, bounded as a whole by the channel's own timeout (aiosmtplib's is per
        socket operation). Any exception is a failed attempt, retried with backoff and dead
        after the bounds: never a hand-back that could loop.

        `last` is the commit of this lane's previous outcome. No send completes before it:
        a channel that can hold its last step (SMTP's final dot) transfers meanwhile and
        finishes once it is done; any other channel waits for it first."""
        if not row.message:
            # A row whose message could not be made (`rows.unmade_row`), put back in the
            # queue by a retry or a resend: there is nothing to send, and never an empty mail.
            return TransportError(row.last_error or "no message to send", permanent=True)
        # A `channels.base.HeldChannel`, told by its method: `isinstance` against a runtime
        # Protocol cost 11% of the worker's time (py-spy, PostgreSQL bench).
        send_held = getattr(channel, "send_held", None)
        held = send_held is not None and last is not None and not last.done()
        if last is not None and not held:
            await asyncio.shield(last)
        limit = channel.send_timeout
        try:
            # Attachments are stored once and put into the message here (ledger 0015).
            message = await self.store.assembled(row)
            try:
                async with asyncio.timeout(limit):
                    if held and send_held is not None:
                        # Short of the send's own bound (or the hold would time the send out,
                        # spending an attempt) and of a lease renewal.
                        hold = min(READY_HOLD_SECONDS, self.renew_every, limit / 2)
                        await send_held(message, last, hold)
                    else:
                        await channel.send(message)
            except NotSent:
                # The last commit is slow (the database is away): nothing went out. Wait for
                # it, then send whole; this is the same attempt.
                assert last is not None
                await asyncio.shield(last)
                async with asyncio.timeout(limit):
                    await channel.send(message)
        except TransportError as exc:
            return exc
        except TimeoutError:
            return TransportError(f"timeout: the send took over {limit:g} s")
        except Exception as exc:
            return TransportError(f"unexpected {type(exc).__name__}: {exc}")
        return None

    async def _send_one(
        self, row: Delivery, last: asyncio.Future[None] | None
    ) -> asyncio.Future[None] | None:
        """Send one row; return the commit of its outcome (the lane's next `last`), or
        `last` itself when the row went back unsent."""
        channel, pace = self.router(row) if self.router is not None else (self.channel, None)
        if pace is not None:
            await pace.acquire()
            self.pacing.took(row.channel, pace)
        if self._limiter is not None:
            await self._limiter.acquire()
        if self.quotas is not None and await self._held_back(row, channel):
            return last
        leased = await self._leased(row)
        if leased is None:
            return last
        started = self.clock()
        error = await self._attempt(leased, channel, last)
        if error is not None and self.quotas is not None:
            if await self._held_back(leased, channel, error):
                return last
        if error is not None and error.bounce:
            await self._suppress(leased, error)
        outcome = self._outcome(leased, error, self.clock())
        self._count(leased, outcome, started)
        # Done with: no longer held (a stop must not hand back a sent row), only recording
        # until the commit (a claim meanwhile must not queue it again).
        self._unhold(row)
        committed = self._recording[row.id] = self.recorder.later(outcome)
        if last is not None and not last.done():
            # Failed before its last step: the previous 250 may still be unrecorded, and
            # batches may commit out of order. The lane's next send waits for both.
            return _both(last, committed)
        return committed

    async def _held_back(
        self, row: Delivery, channel: Channel, error: TransportError | None = None
    ) -> bool:
        """The account's limits, in one place: before the send (`error` None) its quota or
        pause; after it, a throttle reply that pauses the account. Either way the row goes
        back pending, due when the account has room, its attempt not spent (True)."""
        assert self.quotas is not None
        while True:
            now = self.clock()
            try:
                if error is None:
                    wait = await self.quotas.admit(row, channel, now)
                else:
                    wait = await self.quotas.throttled(row, channel, error, now)
                if wait is None:
                    return False
                async with self._lease_lock:  # its latest lease, not moved meanwhile
                    current = self._held.get(row.id, row)
                    changed = await self.quotas.limits.defer(
                        [current], until=wait.until, reason=wait.reason, now=now
                    )
                if not changed:  # no longer ours: another worker holds it, or it is done
                    log.warning(
                        "row not put back: its claim is no longer ours",
                        extra={"action": "defer_missed", "delivery": row.id},
                    )
                break
            except StoreError as exc:
                if error is not None:
                    return False  # recorded as an ordinary failed attempt
                # Cannot count against the quota: do not send, and spend no attempt: look
                # again once the database answers (a row lost meanwhile is another's now).
                await asyncio.sleep(self.weather.down("quota", exc))
                if row.id not in self._held:
                    return True
        self.stats.deferred += 1
        log.info(
            "send waits for the account's limits",
            extra={"action": "send_deferred", "delivery": row.id, "until": wait.until,
                   "reason": wait.reason},
        )  # fmt: skip
        self._unhold(row)
        return True

    async def _suppress(self, row: Delivery, error: TransportError) -> None:
        """A 5xx for the address: on the suppression list before the row ends `bounced` (a
        crash between the two sends it again, to bounce again: the list is an upsert)."""
        if self.suppressions is None:
            return
        if self.mask is not None:
            error.message = self.mask(error.message)
        try:
            await self.suppressions.suppress(
                row.recipient,
                reason=error.message[:200],
                excerpt=error.message,
                source="smtp",
                delivery_id=row.id,
                now=self.clock(),
            )
        except StoreError as exc:
            self.weather.down("suppress", exc)

    def _count(self, row: Delivery, outcome: Outcome, started: float) -> None:
        self.stats.tally(outcome.state)
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

    # --- the claim ---

    async def _skip_unsubscribed(self, rows: list[Delivery], now: float) -> list[Delivery]:
        external = [r.recipient for r in rows if r.external]
        if not external:
            return rows
        gone = await self.store.unsubscribed(external)
        bounced = await self.suppressions.suppressed(external) if self.suppressions else {}
        if not gone and not bounced:
            return rows
        keep = []
        skipped = []
        for r in rows:
            if r.external and r.recipient.lower() in gone:
                skipped.append(Outcome(r.id, State.SKIPPED, now, error="recipient unsubscribed"))
            elif r.external and r.recipient.lower() in bounced:
                why = f"address suppressed (bounced): {bounced[r.recipient.lower()]}"
                skipped.append(Outcome(r.id, State.SKIPPED, now, error=why))
            else:
                keep.append(r)
        self.stats.skipped += len(skipped)
        await self.store.record(skipped)
        return keep

    async def _claim(self, now: float) -> list[Delivery]:
        room = self.capacity - len(self._held)
        if room <= 0:
            return []
        # Outcomes committed by now are seen by the claim below: forget them.
        for rid in [rid for rid, done in self._recording.items() if done.done()]:
            del self._recording[rid]
        if self.fair:
            rows = await self.store.claim(
                now=now,
                limit=room,
                lease_seconds=self.settings.lease_seconds,
                kind=self.kind,
                per_channel=PACED_HOLD,
                rooms=self.pacing.rooms(self._held.values(), room),
            )
        else:
            rows = await self.store.claim(
                now=now, limit=room, lease_seconds=self.settings.lease_seconds, kind=self.kind
            )
        rows = await self._skip_unsubscribed(rows, now) if rows else rows
        for row in rows:
            if self.fair:
                self.pacing.saw(row)
            committing = self._recording.pop(row.id, None)
            if committing is not None and not await self._ours_after(committing, row):
                continue
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

    async def _ours_after(self, committing: asyncio.Future[None], row: Delivery) -> bool:
        """A row claimed while its outcome from here was being committed. Either the claim
        came first (its lease had run out while the database was away), and the commit,
        guarded by state, settled it: not ours to send. Or the commit came first and left it
        due again (a retry with a short backoff), and this claim is a new attempt: ours.
        The row as it stands once the commit is done says which."""
        await asyncio.shield(committing)
        now = await self.store.get(row.id)
        return now is not None and now.state is State.SENDING and now.lease_until == row.lease_until

    def _unhold(self, row: Delivery) -> None:
        """The row is no longer held. If its channel was left out of the last claim for the
        rows it held, it has room now: claim again."""
        self._held.pop(row.id, None)
        if self.pacing.released(row.channel):
            self._wake.set()

    # --- leases that follow the work ---

    async def _heartbeat(self) -> None:
        """Renew the leases of every held row (queued or being sent) every `renew_every`."""
        while True:
            await asyncio.sleep(self.renew_every)
            if self._held:
                await self._renew()

    async def _renew(self) -> None:
        # Not while a row goes back to the ledger (`_held_back`): that is guarded by the lease
        # it read, and a renewal committed in between would leave the row claimed, unsent.
        async with self._lease_lock:
            await self._renew_held()

    async def _renew_held(self) -> None:
        rows = list(self._held.values())
        try:
            renewed = await self.store.renew(
                rows, now=self.clock(), lease_seconds=self.settings.lease_seconds
            )
        except StoreError as exc:
            self.weather.down("renew", exc)
            return
        self.weather.up()
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
        # The commit of this lane's last outcome: the next send finishes only after it, so a
        # kill leaves at most one sent, unrecorded message per lane (connection).
        last: asyncio.Future[None] | None = None
        while True:
            row = await self._queue.get()
            if last is not None and last.done():
                last = None
            try:
                last = await self._send_one(row, last)
            except Exception:
                # A bug here, not in the channel: count it as a failed attempt (never a
                # hand-back, which would claim the row again at once, in a loop).
                log.exception("send crashed", extra={"action": "send_crashed", "delivery": row.id})
                now = self.clock()
                self.recorder.add(self._outcome(row, TransportError("internal error"), now))
            # Cancelled mid-send (shutdown), the row stays held and is handed back.
            self._unhold(row)
            self._lost.discard(row.id)
            self._update_marks()

    def _start_lanes(self) -> None:
        self._idle.set()
        self.pacing.reset()
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
        # Read before the next due time: a commit by another process in between is seen.
        version = await self.store.outside_commits()
        nxt = await self.store.next_due_at(kind=self.kind, exclude=self.pacing.left_out())
        timeout = self.settings.poll_interval
        if nxt is not None:
            timeout = max(0.0, min(timeout, nxt - now))
        if self.pacing.wait is not None:
            timeout = min(timeout, self.pacing.wait)
        if timeout > 0:
            await self._wake_or_outside_commit(timeout, version)
        self._wake.clear()

    async def _wake_or_outside_commit(self, seconds: float, version: int | None) -> None:
        """Wait up to `seconds` for a wake-up, or for another process's commit to the ledger
        where the database can tell (SQLite: `version` changes), looked at every
        OUTSIDE_COMMITS_POLL_SECONDS."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            left = deadline - loop.time()
            step = left if version is None else min(left, OUTSIDE_COMMITS_POLL_SECONDS)
            if step <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), step)
                return
            except TimeoutError:
                pass
            if version is not None and await self.store.outside_commits() != version:
                return

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
        self.recorder.start()
        self._start_lanes()
        try:
            while not stop.is_set():
                if len(self._held) > self.capacity // 2:
                    await self._first(self._wait_low_water(), stop.wait())
                    continue
                now = self.clock()
                try:
                    claimed = await self._claim(now)
                    self.weather.up()
                    if claimed:
                        continue
                    await self._first(self._idle_wait(now), stop.wait())
                except StoreError as exc:
                    # Weather: wait and try again; the service never ends on its own.
                    await self._first(asyncio.sleep(self.weather.down("claim", exc)), stop.wait())
        finally:
            await self._stop_lanes(drain_timeout)
            await self.recorder.stop(drain_timeout)

    async def _due_now(self, now: float) -> bool:
        """Is any row of the worker's kind claimable at `now`, left out or not?"""
        nxt = await self.store.next_due_at(kind=self.kind)
        return nxt is not None and nxt <= now

    async def run_until_idle(self) -> WorkerStats:
        """Burst mode (tests, `notifier send`): deliver everything due now, then return.

        Returns the counts of this burst alone.
        """
        self.stats = WorkerStats()
        self.recorder.start()
        self._start_lanes()
        try:
            while True:
                if len(self._held) > self.capacity // 2:
                    await self._wait_low_water()
                    continue
                now = self.clock()
                if await self._claim(now):
                    continue
                pace_wait = self.pacing.wait
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
            await self.recorder.stop(self.settings.lease_seconds)
        return self.stats

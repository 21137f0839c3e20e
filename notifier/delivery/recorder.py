"""Group commit of send outcomes: a lane's next send starts only once its last outcome is
committed, and outcomes finished while a commit runs share the next one.

So a kill leaves at most one unrecorded 250 per lane (connection), and SQLite does not commit
once per message. Through a database outage a batch is kept and retried: losing it would
resend sent mail. At shutdown it is retried until a deadline, then abandoned with a log line
(those rows are sent again when their lease runs out).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from notifier.delivery.weather import DbWeather
from notifier.errors import StoreError
from notifier.ledger.models import Outcome
from notifier.ledger.store import Store

log = logging.getLogger(__name__)

# Loop iterations the flusher lets pass before it commits what is queued.
RECORD_GATHER_TURNS = 2


class GroupCommit:
    """Commits outcomes; `submit` returns once its outcome is committed."""

    def __init__(self, *, store: Store, weather: DbWeather, clock: Callable[[], float]) -> None:
        self.store = store
        self.weather = weather
        self.clock = clock
        self._results: list[Outcome] = []
        # One future per outcome in `_results` that a lane waits on, resolved once committed.
        self._waiters: list[asyncio.Future[None]] = []
        self._ready = asyncio.Event()
        self._committing: asyncio.Future[None] | None = None  # a commit is running
        self._closing = False
        self._give_up_at: float | None = None  # closing: stop retrying a failed record then
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background flusher (it takes outcomes no lane is waiting to commit)."""
        self._closing = False
        self._give_up_at = None
        self._task = asyncio.create_task(self._run(), name="notifier-recorder")

    async def stop(self, within: float | None) -> None:
        """Commit what is left, retrying through an outage for at most `within` seconds.

        Never cancels a commit midway: the flusher is asked to finish instead.
        """
        self._closing = True
        self._give_up_at = None if within is None else self.clock() + within
        self._ready.set()
        if self._task is not None:
            await self._task
            self._task = None

    def add(self, outcome: Outcome) -> None:
        """Queue an outcome without waiting for its commit (a lane's crash path)."""
        self._results.append(outcome)
        self._ready.set()

    def later(self, outcome: Outcome) -> asyncio.Future[None]:
        """Queue an outcome for the flusher; the future is done once it is committed (a
        held send's final step waits for it: the commit overlaps the next transfer)."""
        done = asyncio.get_running_loop().create_future()
        self._results.append(outcome)
        self._waiters.append(done)
        self._ready.set()
        return done

    async def submit(self, outcome: Outcome) -> None:
        """Record an outcome; return once it is committed.

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

    async def _run(self) -> None:
        while not (self._closing and not self._results):
            await self._ready.wait()
            self._ready.clear()
            # Two loop iterations more, so that the 250s read in them share this commit (held
            # sends wait for it at their final dot only: their transfer goes on meanwhile).
            for _ in range(RECORD_GATHER_TURNS):
                await asyncio.sleep(0)
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
            # The committing lane was cancelled (shutdown): the flusher's last pass takes
            # the batch; recording it twice is harmless (updates guarded by state).
            self._results = batch + self._results
            self._waiters = waiters + self._waiters
            self._ready.set()
            raise
        finally:
            self._committing = None
            committing.set_result(None)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _record(self, batch: list[Outcome]) -> bool:
        """Commit one batch; on a database error wait (backoff) and say False."""
        try:
            await self.store.record(batch)
        except StoreError as exc:
            await asyncio.sleep(self.weather.down("record", exc))
            return False
        self.weather.up()
        return True

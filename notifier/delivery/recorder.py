"""Group commit of send outcomes, in the background: `later` queues an outcome and returns a
future that is done once it is committed; outcomes finished meanwhile share one commit.

A lane does not finish its next send before that future is done (delivery/worker.py), so a
kill leaves at most one unrecorded 250 per lane (connection), and SQLite does not commit once
per message. Up to `COMMITS_IN_FLIGHT` batches commit at once: on PostgreSQL a commit is a
round trip (about 1 ms) that a held message waits for, and a batch that also waited for the one
before it made that longer (two at once: 2,590 -> 2,880 msg/s, 4 alternated pairs on uvloop).
Through a database outage a batch is kept and retried: losing it would resend sent mail. At
shutdown it is retried until a deadline, then abandoned with a log line (those rows are sent
again when their lease runs out).
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

# Loop iterations the flusher lets pass before it commits what is queued, so that the 250s
# read in them share the commit: outcomes per PostgreSQL commit 4.0 -> 6.8 (BENCHMARKS.md).
RECORD_GATHER_TURNS = 2
# Batches committing at once. Outcomes are independent updates guarded by state, so their
# order across batches does not matter; a lane's own order is kept by the worker.
COMMITS_IN_FLIGHT = 2


class GroupCommit:
    """Commits outcomes in the background; `later` says when each is committed."""

    def __init__(self, *, store: Store, weather: DbWeather, clock: Callable[[], float]) -> None:
        self.store = store
        self.weather = weather
        self.clock = clock
        self._results: list[Outcome] = []
        # Futures of the outcomes in `_results`, done once their batch is committed.
        self._waiters: list[asyncio.Future[None]] = []
        self._ready = asyncio.Event()
        self._commits: set[asyncio.Task[None]] = set()
        self._closing = False
        self._give_up_at: float | None = None  # closing: stop retrying a failed record then
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background flusher."""
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
        """Queue an outcome without a future (a lane's crash path)."""
        self._results.append(outcome)
        self._ready.set()

    def later(self, outcome: Outcome) -> asyncio.Future[None]:
        """Queue an outcome; the future is done once it is committed (a held send's final
        step waits for it: the commit overlaps the next transfer)."""
        done = asyncio.get_running_loop().create_future()
        self._results.append(outcome)
        self._waiters.append(done)
        self._ready.set()
        return done

    async def _run(self) -> None:
        while True:
            if not self._results:
                if self._closing:
                    break
                await self._ready.wait()
                self._ready.clear()
                for _ in range(RECORD_GATHER_TURNS):
                    await asyncio.sleep(0)
                continue
            if len(self._commits) >= COMMITS_IN_FLIGHT:
                await asyncio.wait(self._commits, return_when=asyncio.FIRST_COMPLETED)
                continue
            batch, self._results = self._results, []
            waiters, self._waiters = self._waiters, []
            task = asyncio.create_task(self._commit(batch, waiters), name="notifier-commit")
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)
        if self._commits:
            await asyncio.gather(*self._commits)

    async def _commit(self, batch: list[Outcome], waiters: list[asyncio.Future[None]]) -> None:
        """Commit one batch and resolve its futures; through a database outage, retry until
        it is back (at shutdown, until `_give_up_at`)."""
        while not await self._record(batch):
            if self._closing and self._give_up_at is not None:
                if self.clock() > self._give_up_at:
                    log.error(
                        "outcomes not recorded at shutdown (database unavailable);"
                        " these rows will be sent again when their lease runs out",
                        extra={"action": "record_abandoned", "count": len(batch)},
                    )
                    break
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
        except Exception as exc:
            # A bug, not weather: keep the batch (its rows were sent) and try again after a
            # backoff, never in a loop.
            log.exception("recording outcomes crashed", extra={"action": "record_crashed"})
            await asyncio.sleep(self.weather.down("record", StoreError(str(exc))))
            return False
        self.weather.up()
        return True

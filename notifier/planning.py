"""The planning loop: make the rows due soon (catching up after downtime), and set the timer.

One pass at a time: a request while one runs makes it go round once more (a pass is
idempotent and reads the clock each time), so an outage never piles up timer jobs. A pass
that meets a database fault backs off and tries again; the service never ends on its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from notifier.compose.admin_notices import AdminNotices, next_digest
from notifier.compose.outbox import Outbox, Unmade
from notifier.config import Settings
from notifier.constants import DB_RETRY_BASE_SECONDS, DB_RETRY_CAP_SECONDS, PLAN_HORIZON
from notifier.delivery.weather import backoff
from notifier.errors import StoreError
from notifier.ledger.store import Store
from notifier.schedule.planner import PlannedSend
from notifier.timer import Timer

log = logging.getLogger(__name__)

# Sends older than this are never caught up nor recorded missed, however long the downtime.
MAX_CATCH_UP = timedelta(days=366)
WATERMARK = "materialized_until"
# A pass this long after an unmade send's grace ends records it missed (the grace is
# inclusive: a send exactly at its end is still tried).
UNMADE_AFTER = timedelta(seconds=1)


class PlanningLoop:
    """Turns the running config into ledger rows as their time comes."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        outbox: Outbox,
        notices: AdminNotices,
        wake: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.outbox = outbox
        self.notices = notices
        self.wake = wake
        self.clock = clock
        #: Set by `App.run`: the in-memory timer that fires the passes (none in burst mode).
        self.timer: Timer | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._want_replan = False
        #: The last database error of a pass while it lasts (see `App.db_problem`).
        self.error: str | None = None
        #: Sends the last pass could not make, by plan key (/readyz, console).
        self.unmade: dict[str, Unmade] = {}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), self.settings.tz)

    async def prepare(self) -> None:
        """Make the rows due soon (and catch up after downtime), then wake the workers."""
        now = self.clock()
        mark = await self.store.get_meta(WATERMARK)
        graces = [self.outbox.grace_of(e) for e in self.outbox.schedule.events.values()]
        since = now - max(graces or [self.settings.grace]).total_seconds()
        if mark is not None:
            since = min(since, float(mark))
        since = max(since, now - MAX_CATCH_UP.total_seconds())
        result = await self.outbox.materialize(now, since=since)
        self.unmade = {u.plan_key: u for u in result.unmade}
        until = now + self.settings.prepare_ahead.total_seconds()
        # A send that could not be made is not done: the mark stays at it, so that the
        # passes after its grace still look at it and record it missed.
        done = min([until, *(u.send_at.timestamp() for u in result.unmade)])
        if mark is None or float(mark) < done or (result.unmade and float(mark) > done):
            await self.store.set_meta(WATERMARK, repr(done))
        if result.pending:
            self.wake()
        await self.notices.daily_digest(now, unmade=result.unmade)

    async def replan(self) -> None:
        """Materialize what is due, and set the timer for the sends of the coming days."""
        await self.prepare()
        if self.timer is None:
            return
        now = self.now()
        ahead = self.settings.prepare_ahead
        sends = self.upcoming(now, now + PLAN_HORIZON)
        times = [max(now, p.send_at - ahead) for p in sends]
        # A send that cannot be made is recorded missed as soon as its grace has passed.
        times += [max(now, u.gives_up_at + UNMADE_AFTER) for u in self.unmade.values()]
        extra: dict[str, object] = {"action": "timer_set"}
        if self.outbox.schedule.admins:  # the digest at its time, not at the next hourly pass
            digest = next_digest(now, self.settings.notices.digest_at)
            times.append(digest)
            extra["digest"] = digest.isoformat()
        extra["jobs"] = self.timer.reschedule(times)
        log.info("timer set", extra=extra)

    def soon(self, *, replan: bool = False) -> None:
        """Prepare (or replan) now in the background, retrying through database faults."""
        self._want_replan = self._want_replan or replan
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="notifier-plan")
        else:
            self._again = True

    async def _loop(self) -> None:
        failures = 0
        while True:
            replan, self._want_replan = self._want_replan, False
            self._again = False
            try:
                await (self.replan() if replan else self.prepare())
            except StoreError as exc:
                failures += 1
                self.error = str(exc)
                self._want_replan = self._want_replan or replan
                log.warning(
                    "database unavailable; planning retries",
                    extra={"action": "db_retry", "during": "plan", "error": str(exc)},
                )
                base, cap = DB_RETRY_BASE_SECONDS, DB_RETRY_CAP_SECONDS
                await asyncio.sleep(backoff(failures, base=base, cap=cap, rand=random.random))
                continue
            if self.error is not None:
                log.info("planning resumed", extra={"action": "db_back", "failures": failures})
            self.error = None
            failures = 0
            if not (self._again or self._want_replan):
                return

    async def stop(self) -> None:
        """Cancel a pass in progress (the ledger keeps what it committed)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def unmade_sends(self) -> list[Unmade]:
        """The sends the last pass could not make, by send time (/readyz, console)."""
        return sorted(self.unmade.values(), key=lambda u: (u.send_at, u.plan_key))

    def upcoming(self, since: datetime, until: datetime) -> list[PlannedSend]:
        return self.outbox.planned(since, until)

    def log_next(self, count: int = 5) -> None:
        """Say at start what comes next, so staff see the calendar was understood."""
        now = self.now()
        for p in self.upcoming(now, now + timedelta(days=366))[:count]:
            log.info(
                f"下一次发送 next: {p.send_at:%Y-%m-%d %H:%M} {p.event.title} "
                f"({p.reminder.label}, {', '.join(p.reminder.all_audiences)})",
                extra={"action": "planned", "plan": p.plan_key},
            )

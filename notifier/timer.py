"""The timer: the only module that imports APScheduler.

Jobs live in memory and are rebuilt from the schedule at start and on every reload; the
ledger, not the timer, is the truth (APScheduler 3 drops a date job once handed to its
executor, and cannot share a job store between processes: its FAQ says so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta, tzinfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from notifier.metrics import Metrics

log = logging.getLogger(__name__)

REPLAN_EVERY = timedelta(hours=1)


class Timer:
    """Calls `prepare()` at each given time, and `replan()` hourly."""

    def __init__(
        self,
        *,
        prepare: Callable[[], Awaitable[None]],
        replan: Callable[[], Awaitable[None]],
        tz: tzinfo,
        metrics: Metrics | None = None,
    ) -> None:
        self._prepare = prepare
        self._replan = replan
        self._metrics = metrics
        self._scheduler = AsyncIOScheduler(timezone=tz)
        self._prefix = "prepare:"

    def start(self) -> None:
        """Start in the running event loop."""
        self._scheduler.start()
        self._scheduler.add_job(
            self._replan,
            "interval",
            seconds=REPLAN_EVERY.total_seconds(),
            id="replan",
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
        )

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def _fire(self, run_at: float) -> None:
        if self._metrics is not None:
            self._metrics.scheduler_lag.set(max(0.0, time.time() - run_at))
        await self._prepare()

    def reschedule(self, times: Iterable[datetime]) -> int:
        """Replace the prepare jobs with one per distinct time; returns how many are set."""
        wanted = {t.timestamp(): t for t in times}
        for job in self._scheduler.get_jobs():
            if job.id.startswith(self._prefix) and float(job.id[len(self._prefix) :]) not in wanted:
                job.remove()
        existing = {job.id for job in self._scheduler.get_jobs()}
        for ts, at in sorted(wanted.items()):
            job_id = f"{self._prefix}{ts}"
            if job_id in existing:
                continue
            self._scheduler.add_job(
                self._fire,
                "date",
                run_date=at,
                args=[ts],
                id=job_id,
                coalesce=True,
                misfire_grace_time=None,
            )
        return len(wanted)

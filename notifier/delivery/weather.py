"""Database weather for the delivery loops: back off, say what is wrong, and note the return."""

from __future__ import annotations

import logging
from collections.abc import Callable

from notifier.constants import DB_RETRY_BASE_SECONDS, DB_RETRY_CAP_SECONDS
from notifier.errors import StoreError

log = logging.getLogger(__name__)


def backoff(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): spreads retry storms."""
    return float(rand() * min(cap, base * 2.0 ** max(0, attempt - 1)))


class DbWeather:
    """The last database error of a worker's loops while it lasts (None once it works), and
    how long to wait before the next try. An outage is weather: every loop waits and retries."""

    def __init__(self, rand: Callable[[], float]) -> None:
        self.rand = rand
        self.error: str | None = None
        self.failures = 0

    def down(self, what: str, exc: StoreError) -> float:
        """Note a database error during `what`; return how long to wait before trying again."""
        self.failures += 1
        self.error = str(exc)
        log.warning(
            "database unavailable; retrying",
            extra={"action": "db_retry", "during": what, "error": str(exc)},
        )
        return backoff(
            self.failures, base=DB_RETRY_BASE_SECONDS, cap=DB_RETRY_CAP_SECONDS, rand=self.rand
        )

    def up(self) -> None:
        """A database call worked: the outage, if any, is over."""
        if self.error is not None:
            log.info("database back", extra={"action": "db_back", "failures": self.failures})
        self.error = None
        self.failures = 0

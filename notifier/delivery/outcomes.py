"""What an attempt comes to, and the worker's tally of it.

Pure: the retry policy reads the row, the channel's error and the time, nothing else, so it
is the same in every instance and easy to state: a 5xx fails (or bounces, for the address);
anything else is tried again after a backoff with full jitter, at least the platform's own
penalty, until the attempts or the time allowed run out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from notifier.channels.base import TransportError
from notifier.config import DeliverySettings
from notifier.delivery.weather import backoff
from notifier.ledger.models import Delivery, Outcome, State


@dataclass
class WorkerStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    expired: int = 0
    deferred: int = 0  # put back unsent for an account's quota or pause (no attempt spent)
    bounced: int = 0  # of `failed`: the address refused for good (now suppressed)

    def tally(self, state: State) -> None:
        """Count one attempt's outcome."""
        if state is State.SENT:
            self.sent += 1
        elif state is State.PENDING:
            self.retried += 1
        elif state in (State.FAILED, State.BOUNCED):
            self.failed += 1
            if state is State.BOUNCED:
                self.bounced += 1
        elif state is State.DEAD:
            self.dead += 1


def outcome_of(
    row: Delivery,
    error: TransportError | None,
    now: float,
    settings: DeliverySettings,
    rand: Callable[[], float],
) -> Outcome:
    """The outcome of one attempt at `row` that ended with `error` (None: accepted) at `now`."""
    if error is None:
        return Outcome(row.id, State.SENT, now)
    if error.permanent:
        state = State.BOUNCED if error.bounce else State.FAILED
        return Outcome(row.id, state, now, error=error.message)
    s = settings
    if row.attempts >= s.max_attempts or now - row.due_at > s.give_up_after:
        return Outcome(row.id, State.DEAD, now, error=f"gave up: {error.message}")
    delay = backoff(row.attempts, base=s.base_delay, cap=s.max_delay, rand=rand)
    if error.retry_after is not None:  # the platform's penalty (a throttled robot)
        delay = max(delay, error.retry_after)
    return Outcome(row.id, State.PENDING, now, error=error.message, retry_at=now + delay)

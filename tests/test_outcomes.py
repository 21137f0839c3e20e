"""The retry policy (delivery/outcomes.py): what one attempt comes to, from the row, the
channel's error and the time alone."""

from __future__ import annotations

from dataclasses import replace

from notifier.channels.base import TransportError
from notifier.config import DeliverySettings
from notifier.delivery.outcomes import WorkerStats, outcome_of
from notifier.ledger.models import State
from tests.conftest import delivery_row

SETTINGS = DeliverySettings(base_delay=10.0, max_delay=100.0, max_attempts=3)
ROW = delivery_row(id=7, due_at=1_000.0)


def half() -> float:
    return 0.5


def test_an_accepted_attempt_is_sent_at_its_time() -> None:
    out = outcome_of(ROW, None, 1_001.0, SETTINGS, half)
    assert (out.state, out.at, out.error) == (State.SENT, 1_001.0, None)


def test_a_5xx_fails_and_a_5xx_for_the_address_bounces() -> None:
    refused = TransportError("550 5.7.1 policy", permanent=True)
    unknown = TransportError("550 5.1.1 no such user", permanent=True, bounce=True)
    assert outcome_of(ROW, refused, 1_001.0, SETTINGS, half).state is State.FAILED
    assert outcome_of(ROW, unknown, 1_001.0, SETTINGS, half).state is State.BOUNCED


def test_a_4xx_is_retried_after_a_jittered_backoff_and_at_least_the_platforms_penalty() -> None:
    later = outcome_of(ROW, TransportError("451 try later"), 1_001.0, SETTINGS, half)
    assert later.state is State.PENDING and later.retry_at is not None
    assert 1_001.0 < later.retry_at <= 1_001.0 + SETTINGS.max_delay
    throttled = TransportError("45009 throttled", retry_after=600.0)
    penalty = outcome_of(ROW, throttled, 1_001.0, SETTINGS, half)
    assert penalty.retry_at == 1_601.0


def test_the_last_attempt_or_a_send_past_its_time_gives_up() -> None:
    error = TransportError("451 try later")
    last = outcome_of(replace(ROW, attempts=3), error, 1_001.0, SETTINGS, half)
    late = outcome_of(ROW, error, 1_000.0 + SETTINGS.give_up_after + 1, SETTINGS, half)
    assert last.state is State.DEAD and late.state is State.DEAD
    assert last.error == "gave up: 451 try later"


def test_the_tally_counts_a_bounce_as_a_failure_too() -> None:
    stats = WorkerStats()
    for state in (State.SENT, State.PENDING, State.BOUNCED, State.FAILED, State.DEAD):
        stats.tally(state)
    assert (stats.sent, stats.retried, stats.failed, stats.bounced, stats.dead) == (1, 1, 2, 1, 1)

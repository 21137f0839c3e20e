"""Plain value types shared by the layers: the ledger's rows and what creates them.

Times are POSIX seconds (float, UTC) in the ledger: portable across SQLite and PostgreSQL and
cheap to compare; conversion to local time happens only at the edges.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class State(enum.StrEnum):
    """Life of a delivery row.

    pending -> sending -> sent | pending (retry) | failed (5xx) | dead (gave up);
    missed: planned while the service was down, beyond the grace period, never sent;
    skipped: the recipient unsubscribed (or, for outreach, is suppressed) before the send;
    bounced: the server refused the address for good (a 5xx on RCPT TO): never retried, and
    the address goes on the suppression list.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    MISSED = "missed"
    SKIPPED = "skipped"
    BOUNCED = "bounced"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A row to insert; `key` is the idempotency key, unique in the ledger."""

    key: str
    event_id: str
    occurrence: str  # ISO date of the occurrence start, or "" for webhook sends
    reminder_id: str
    recipient: str  # email address
    channel: str  # "email"
    due_at: float
    message_id: str  # RFC 5322 Message-ID, derived from key
    subject: str
    message: str  # the full MIME message as sent (ASCII: bodies are base64)
    source: str = "schedule"  # schedule | hook | manual
    state: State = State.PENDING
    external: bool = False  # outreach to an outside audience: honours unsubscribes
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A row as read back from the ledger."""

    id: int
    key: str
    event_id: str
    occurrence: str
    reminder_id: str
    recipient: str
    channel: str
    state: State
    due_at: float
    message_id: str
    subject: str
    message: str
    source: str
    external: bool
    attempts: int
    lease_until: float | None
    last_error: str | None
    created_at: float
    updated_at: float
    sent_at: float | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one send attempt ended in, recorded by `Store.record`."""

    delivery_id: int
    state: State  # SENT, PENDING (retry at `retry_at`), FAILED, DEAD or SKIPPED
    at: float
    error: str | None = None
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class EndedRow:
    """A row that ended failed or dead (the admins' daily digest lists them)."""

    id: int
    state: str
    event_id: str
    reminder_id: str
    recipient: str
    subject: str
    due_at: float
    error: str


@dataclass(frozen=True, slots=True)
class MissedSend:
    """A send recorded missed because it could not be made: its rows, summed."""

    event_id: str
    occurrence: str
    reminder_id: str
    rows: int
    first_due: float
    error: str


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Which ledger rows a listing or an export takes (the console's deliveries page, the
    records export); None means any. `since`/`until` bound the planned send time (due_at)."""

    state: State | None = None
    event: str | None = None
    reminder: str | None = None
    recipient: str | None = None
    since: float | None = None
    until: float | None = None

    def where(self) -> tuple[list[str], dict[str, Any]]:
        """The SQL conditions (to be joined with AND) and their parameters."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        for column, name, value in (
            ("state", "state", None if self.state is None else str(self.state)),
            ("event_id", "event", self.event),
            ("reminder_id", "reminder", self.reminder),
            ("recipient", "recipient", self.recipient),
        ):
            if value is not None:
                clauses.append(f"{column} = :{name}")
                params[name] = value
        if self.since is not None:
            clauses.append("due_at >= :since")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("due_at < :until")
            params["until"] = self.until
        return clauses, params

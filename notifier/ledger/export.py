"""The delivery log as a record (台账): every row the filters select, oldest first, read in
batches by keyset so that 100,000 rows stream in bounded memory.

Only the columns a record shows are read, and of the stored message only its head (the To
header carries the recipient's name): a message can be large, its head is not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from notifier.ledger.database import Database
from notifier.ledger.models import DeliveryFilter

# Rows per query: large enough that 100,000 rows take 100 round trips, small enough that a
# batch (with the message heads) stays well under a few MiB.
EXPORT_BATCH = 1000
# The message's first characters, where its headers are: From, To, Subject, Date, Message-ID
# and the List-* headers take well under 4,000 characters even with a long encoded name.
HEAD_CHARS = 4000


@dataclass(frozen=True, slots=True)
class ExportRow:
    id: int
    event_id: str
    reminder_id: str
    due_at: float
    sent_at: float | None
    recipient: str
    channel: str
    state: str
    attempts: int
    last_error: str | None
    message_id: str
    head: str  # the first HEAD_CHARS of the stored message


async def export_rows(
    db: Database, filters: DeliveryFilter, *, batch: int = EXPORT_BATCH
) -> AsyncIterator[list[ExportRow]]:
    """Yield the selected rows in batches, by (due_at, id) ascending."""
    where, params = filters.where()
    params |= {"limit": batch, "head": HEAD_CHARS}
    after: tuple[float, int] | None = None
    while True:
        clauses = list(where)
        if after is not None:
            clauses.append("due_at >= :a_due AND (due_at > :a_due OR id > :a_id)")
            params["a_due"], params["a_id"] = after
        sql = (
            "SELECT id, event_id, reminder_id, due_at, sent_at, recipient, channel, state,"
            " attempts, last_error, message_id, substr(message, 1, :head) FROM deliveries"
        )
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY due_at, id LIMIT :limit"
        rows = [
            ExportRow(
                id=int(r[0]),
                event_id=r[1],
                reminder_id=r[2],
                due_at=float(r[3]),
                sent_at=None if r[4] is None else float(r[4]),
                recipient=r[5],
                channel=r[6],
                state=r[7],
                attempts=int(r[8]),
                last_error=r[9],
                message_id=r[10],
                head=r[11] or "",
            )
            for r in await db.fetchall(sql, params)
        ]
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        after = (rows[-1].due_at, rows[-1].id)

"""The ledger's statements that differ by dialect or by the rows asked for: the claims.

Each variant is built from named parts (the channel filter is a slot of its own), never by
editing SQL text, so a reformatted line cannot change which rows a worker claims.
"""

from __future__ import annotations

import functools

DELIVERY_COLUMNS = (
    "id, key, event_id, occurrence, reminder_id, recipient, channel, state, due_at, message_id,"
    " subject, message, source, external, attempts, lease_until, last_error, created_at,"
    " updated_at, sent_at"
)
_PG_RETURNING = ", ".join("deliveries." + c.strip() for c in DELIVERY_COLUMNS.split(","))

# Which rows a worker claims: all (None), email only, or chat only (every other channel), so
# that a robot paced at 20 a minute never holds the email worker's lanes. The chat filter is
# the exact predicate of the partial index of migration 6.
CHANNEL_FILTERS = {"email": "channel = 'email'", "chat": "channel <> 'email'"}

# Claimable: due and pending, or sending under a lease that ran out (its worker died).
_CLAIMABLE = "(state = 'pending' AND due_at <= :now) OR (state = 'sending' AND lease_until < :now)"

_CLAIM_SET = (
    "state = 'sending', lease_until = :lease_until, attempts = attempts + 1, updated_at = :now"
)


def _and(condition: str, kind: str | None) -> str:
    """`condition`, restricted to the channels of `kind` (None: every channel)."""
    return f"{condition} AND {CHANNEL_FILTERS[kind]}" if kind is not None else condition


def _claim_pg(kind: str | None) -> str:
    # Another process may get there first; SKIP LOCKED passes over the rows it holds instead
    # of waiting, and FOR UPDATE re-checks the WHERE clause on rows changed meanwhile. As in
    # SQLite's, the two kinds of claimable rows are found separately, each by the
    # (state, due_at) index, in the index's order and no further than the limit: with the OR
    # in one clause (and `id` in the ORDER BY, which the index does not hold) every claim
    # read and sorted the whole table, 37 ms a claim on a ledger of 10,000 rows while
    # delivering them (issue 23). Rows of equal due time come in the index's order (the
    # order they were written); the caller sorts what it got by (due_at, id). Expired leases
    # first: they are older.
    return f"""
WITH expired AS (
    SELECT id FROM deliveries
    WHERE {_and("state = 'sending' AND lease_until < :now", kind)}
    ORDER BY due_at LIMIT :limit
    FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id FROM deliveries
    WHERE {_and("state = 'pending' AND due_at <= :now", kind)}
    ORDER BY due_at LIMIT :limit
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT :limit
)
UPDATE deliveries SET {_CLAIM_SET}
FROM picked WHERE deliveries.id = picked.id
RETURNING {_PG_RETURNING}
"""


def _claim_sqlite(kind: str | None) -> str:
    # The transaction holds the single write lock, so no other writer can interleave. The two
    # kinds of claimable rows are found separately, each by the (state, due_at) index: SQLite
    # cannot use an index for the OR above, and a full scan of a ledger of 100,000 sent rows
    # per claim cost more than the sends.
    return f"""
UPDATE deliveries SET {_CLAIM_SET}
WHERE id IN (
    SELECT id FROM (
        SELECT id, due_at FROM deliveries
        WHERE {_and("state = 'sending' AND lease_until < :now", kind)}
        UNION ALL
        SELECT id, due_at FROM (
            SELECT id, due_at FROM deliveries
            WHERE {_and("state = 'pending' AND due_at <= :now", kind)}
            ORDER BY due_at, id LIMIT :limit
        )
    )
    ORDER BY due_at, id LIMIT :limit
)
RETURNING {DELIVERY_COLUMNS}
"""


@functools.lru_cache(maxsize=8)
def claim_sql(dialect: str, kind: str | None) -> str:
    """The claim of the email worker (and of a worker of every kind): oldest due first."""
    return _claim_pg(kind) if dialect == "postgresql" else _claim_sqlite(kind)


# The fair claim (the chat worker, delivery/fairness.py): rows are ranked within their channel
# by due time and at most `room` of each channel's are taken, so that one robot's long backlog
# neither fills the claim nor stands before another robot's row in it. `room` is
# `:per_channel`, or the channel's own number where the caller names it (`CASE`; 0 takes none
# of its rows). The window reads every claimable row of the kind: chat rows are a group's, not
# a recipient's, so they are few, and the partial index of migration 6 finds them.
_RANKED = "ROW_NUMBER() OVER (PARTITION BY channel ORDER BY due_at, id) AS nth"


def _fair_claim_sqlite(kind: str | None, room: str) -> str:
    return f"""
UPDATE deliveries SET {_CLAIM_SET}
WHERE id IN (
    SELECT id FROM (
        SELECT id, due_at, channel, {_RANKED} FROM (
            SELECT id, due_at, channel FROM deliveries
            WHERE {_and("state = 'sending' AND lease_until < :now", kind)}
            UNION ALL
            SELECT id, due_at, channel FROM deliveries
            WHERE {_and("state = 'pending' AND due_at <= :now", kind)}
        )
    )
    WHERE nth <= {room}
    ORDER BY due_at, id LIMIT :limit
)
RETURNING {DELIVERY_COLUMNS}
"""


def _fair_claim_pg(kind: str | None, room: str) -> str:
    # No window function beside FOR UPDATE: the ranking is a subquery read without locks, and
    # the rows it names are locked (SKIP LOCKED) and checked again. A row that another process
    # holds locked is passed over, not replaced by the next of its channel.
    return f"""
WITH picked AS (
    SELECT id FROM deliveries
    WHERE id IN (
        SELECT id FROM (
            SELECT id, channel, {_RANKED} FROM deliveries
            WHERE {_and(f"({_CLAIMABLE})", kind)}
        ) AS ranked
        WHERE nth <= {room}
    ) AND ({_CLAIMABLE})
    ORDER BY due_at, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries SET {_CLAIM_SET}
FROM picked WHERE deliveries.id = picked.id
RETURNING {_PG_RETURNING}
"""


@functools.lru_cache(maxsize=64)
def fair_claim_sql(dialect: str, kind: str | None, named: int) -> str:
    """The fair claim with `named` channels of their own room (parameters c0, r0, c1, ...)."""
    room = ":per_channel"
    if named:
        whens = " ".join(f"WHEN :c{i} THEN :r{i}" for i in range(named))
        room = f"CASE channel {whens} ELSE :per_channel END"
    build = _fair_claim_pg if dialect == "postgresql" else _fair_claim_sqlite
    return build(kind, room)

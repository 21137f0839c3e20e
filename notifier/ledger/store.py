"""The ledger: what is due, what is being sent, what was sent. The truth the timers rebuild from.

Every time is a float POSIX second passed in by the caller (`now`, `at`): the store never reads
the clock, so its behaviour is a pure function of its inputs and the database.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from notifier.constants import ENQUEUE_CHUNK
from notifier.errors import StoreError
from notifier.keys import hook_row_key
from notifier.ledger import attachments
from notifier.ledger.attachments import AttachmentCache
from notifier.ledger.database import Database, Row, Tx
from notifier.ledger.migrate import migrate, schema_version
from notifier.ledger.models import (
    Delivery,
    EndedRow,
    MissedSend,
    NewDelivery,
    Outcome,
    State,
)
from notifier.ledger.sql import CHANNEL_FILTERS, DELIVERY_COLUMNS, claim_sql, fair_claim_sql

# Keys per `IN (...)` lookup (SQLite allows 32766 variables; stay well below).
IN_CHUNK = 500
# Positions looked up per statement when a redelivered webhook's rows are collected.
HOOK_PROBE = 64
# Tries of a webhook batch: the first inserts without looking (redeliveries are rare), the
# next look first; a third is for a race lost to another transaction (PostgreSQL).
ACCEPT_TRIES = 3

T = TypeVar("T")


_INSERT_COLUMNS = (
    "key", "event_id", "occurrence", "reminder_id", "recipient", "channel", "state", "due_at",
    "message_id", "subject", "message", "source", "external", "last_error",
)  # fmt: skip
_INSERT = (
    f"INSERT INTO deliveries ({', '.join(_INSERT_COLUMNS)}, attempts, created_at, updated_at)"
    f" VALUES ({', '.join(':' + c for c in _INSERT_COLUMNS)}, 0, :now, :now)"
    " ON CONFLICT (key) DO NOTHING"
)


def _chunks(seq: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def in_clause(prefix: str, values: Sequence[object]) -> tuple[str, dict[str, object]]:
    """`(:p0, :p1, ...)` and its parameters: portable where arrays are not (SQLite)."""
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{name}" for name in params) + ")", params


@functools.lru_cache(maxsize=IN_CHUNK // 3)
def _receipts_sql(count: int) -> str:
    values = ", ".join(f"(:h{j}, :w{j}, :d{j}, :now)" for j in range(count))
    return (
        f"INSERT INTO hook_receipts (hook_id, webhook_id, deliveries, created_at) VALUES {values}"
        " ON CONFLICT (hook_id, webhook_id) DO NOTHING RETURNING hook_id, webhook_id"
    )


class _RowsExist(Exception):
    """Some of a batch's rows are in the ledger already: a redelivery, or another
    transaction's accept of the same webhook-id. The batch runs again, looking first."""


Ident = tuple[str, str]  # (hook_id, webhook_id)


def delivery_from_row(row: Row) -> Delivery:
    (id_, key, event_id, occurrence, reminder_id, recipient, channel, state, due_at, message_id,
     subject, message, source, external, attempts, lease_until, last_error, created_at,
     updated_at, sent_at) = row  # fmt: skip
    return Delivery(
        id=int(id_),
        key=key,
        event_id=event_id,
        occurrence=occurrence,
        reminder_id=reminder_id,
        recipient=recipient,
        channel=channel,
        state=State(state),
        due_at=float(due_at),
        message_id=message_id,
        subject=subject,
        message=message,
        source=source,
        external=bool(external),
        attempts=int(attempts),
        lease_until=None if lease_until is None else float(lease_until),
        last_error=last_error,
        created_at=float(created_at),
        updated_at=float(updated_at),
        sent_at=None if sent_at is None else float(sent_at),
    )


def _insert_params(row: NewDelivery, now: float) -> dict[str, object]:
    return {
        "key": row.key,
        "event_id": row.event_id,
        "occurrence": row.occurrence,
        "reminder_id": row.reminder_id,
        "recipient": row.recipient,
        "channel": row.channel,
        "state": str(row.state),
        "due_at": float(row.due_at),
        "message_id": row.message_id,
        "subject": row.subject,
        "message": row.message,
        "source": row.source,
        "external": bool(row.external),
        "last_error": row.last_error,
        "now": now,
    }


class Store:
    """The ledger's operations over a `Database` (opened and closed by its owner)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._attachment_bodies = AttachmentCache()

    # --- schema -----------------------------------------------------------------------------

    async def migrate(self, *, up_to: int | None = None) -> list[int]:
        """Apply the migrations not yet applied (`ledger.migrate`); return their versions."""
        return await migrate(self.db, up_to=up_to)

    async def schema_version(self) -> int:
        """The highest applied migration, 0 for an empty database."""
        return await schema_version(self.db)

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""
        await self.db.fetchone("SELECT 1")

    # --- attachments (stored once by hash; ledger/attachments.py) -----------------------

    async def put_attachments(self, blobs: Mapping[str, bytes], *, now: float) -> None:
        """Store each content under its SHA-256 digest, once: before the rows that name it."""
        if not blobs:
            return
        await self.db.executemany(
            "INSERT INTO attachments (digest, size, content, created_at)"
            " VALUES (:digest, :size, :content, :now) ON CONFLICT (digest) DO NOTHING",
            [{"digest": d, "size": len(c), "content": c, "now": now} for d, c in blobs.items()],
        )

    async def attachment_sizes(self, digests: Sequence[str]) -> dict[str, int]:
        if not digests:
            return {}
        clause, params = in_clause("d", list(dict.fromkeys(digests)))
        rows = await self.db.fetchall(
            f"SELECT digest, size FROM attachments WHERE digest IN {clause}", params
        )
        return {str(d): int(n) for d, n in rows}

    async def assembled(self, row: Delivery) -> Delivery:
        """The row with its attachments' contents spliced into its message (the row itself
        when it has none, without a query). Raises StoreError naming a missing content."""
        wanted = attachments.digests(row.message)
        if not wanted:
            return row
        cache = self._attachment_bodies
        found = {d: cache.get(d) for d in wanted}
        missing = [d for d, body in found.items() if body is None]
        if missing:
            clause, params = in_clause("d", missing)
            for digest, content in await self.db.fetchall(
                f"SELECT digest, content FROM attachments WHERE digest IN {clause}", params
            ):
                body = attachments.encoded(bytes(content))
                found[digest] = body
                cache.put(digest, body)
        gone = [d for d, body in found.items() if body is None]
        if gone:
            raise StoreError(f"attachment content {gone[0][:12]}… is not in the ledger")
        message = attachments.splice(row.message, {d: b for d, b in found.items() if b})
        return dataclasses.replace(row, message=message)

    # --- enqueue ----------------------------------------------------------------------------

    async def enqueue(self, rows: Sequence[NewDelivery], *, now: float) -> int:
        """Insert the rows whose key is new, atomically; return how many were new."""
        if not rows:
            return 0
        async with self.db.transaction() as tx:
            return await self._insert(tx, rows, now)

    @staticmethod
    async def _insert(tx: Tx, rows: Sequence[NewDelivery], now: float) -> int:
        # executemany reuses one prepared statement (SQLite) or pipelines (psycopg): a
        # multi-row VALUES was measured 2x (PG) to 10x (SQLite) slower at this size.
        # Key order: two PostgreSQL transactions inserting overlapping keys then wait on each
        # other in the same order instead of deadlocking.
        rows = sorted(rows, key=lambda r: r.key)
        new = 0
        for chunk in _chunks(rows, ENQUEUE_CHUNK):
            new += await tx.executemany(_INSERT, [_insert_params(r, now) for r in chunk])
        return new

    @staticmethod
    async def _insert_ids(tx: Tx, rows: Sequence[NewDelivery], now: float) -> dict[str, int]:
        """Insert rows that must all be new (in key order, as `_insert`); their ids by key."""
        rows = sorted(rows, key=lambda r: r.key)
        ids: dict[str, int] = {}
        for chunk in _chunks(rows, ENQUEUE_CHUNK):
            got = await tx.insert_ids(_INSERT, [_insert_params(r, now) for r in chunk])
            for row, id_ in zip(chunk, got, strict=True):
                if id_ is None:
                    raise _RowsExist
                ids[row.key] = id_
        return ids

    async def ids_for_keys(self, keys: Sequence[str]) -> list[int]:
        """The ids of these keys, in input order. Raises KeyError for a key not in the ledger."""
        async with self.db.transaction() as tx:
            return await self._ids_for_keys(tx, keys)

    @classmethod
    async def _ids_for_keys(cls, tx: Tx, keys: Sequence[str]) -> list[int]:
        found = await cls._ids_by_key(tx, keys)
        return [found[k] for k in keys]

    @staticmethod
    async def _ids_by_key(tx: Tx, keys: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), IN_CHUNK):
            clause, params = in_clause("k", chunk)
            for key, id_ in await tx.fetchall(
                f"SELECT key, id FROM deliveries WHERE key IN {clause}", params
            ):
                found[key] = int(id_)
        return found

    async def plan_done(self, plan_key: str) -> bool:
        row = await self.db.fetchone("SELECT 1 FROM plans WHERE plan_key = :k", {"k": plan_key})
        return row is not None

    async def mark_plan_done(self, plan_key: str, *, now: float) -> None:
        """Idempotent: marking twice keeps the first time."""
        await self.db.execute(
            "INSERT INTO plans (plan_key, created_at) VALUES (:k, :now)"
            " ON CONFLICT (plan_key) DO NOTHING",
            {"k": plan_key, "now": now},
        )

    # --- the worker's cycle -----------------------------------------------------------------

    async def claim(
        self,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        kind: str | None = None,
        per_channel: int | None = None,
        rooms: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """Lease up to `limit` claimable rows (oldest due first) to the caller.

        Claimable: pending and due, or sending with an expired lease (a dead worker's row:
        attempted again, at-least-once). Two claimers never receive the same row while its
        lease runs: the lease, not an owner's name, decides who may send. `kind` ("email",
        "chat") restricts the rows to those channels (`CHANNEL_FILTERS`).

        `per_channel` takes at most that many rows of any one channel (the oldest due of
        each), or, for a channel named in `rooms`, its number there (0: none of its rows).
        None: no such limit, the tuned claim of the email worker.
        """
        if limit <= 0:
            return []
        params: dict[str, object] = {"now": now, "limit": limit, "lease_until": now + lease_seconds}
        if per_channel is None:
            sql = claim_sql(self.db.dialect, kind)
        else:
            named = sorted((rooms or {}).items())
            sql = fair_claim_sql(self.db.dialect, kind, len(named))
            params["per_channel"] = per_channel
            for i, (channel, room) in enumerate(named):
                params[f"c{i}"], params[f"r{i}"] = channel, room
        if self.db.dialect == "postgresql":
            # One statement, atomic on its own: autocommit, one round trip. Not durable: a
            # claim undone by a crash of the server is only a row sent again (README).
            rows = await self.db.fetchall(sql, params, durable=False)
        else:
            async with self.db.transaction() as tx:  # BEGIN IMMEDIATE: the write lock first
                rows = await tx.fetchall(sql, params)
        claimed = [delivery_from_row(r) for r in rows]
        claimed.sort(key=lambda d: (d.due_at, d.id))  # RETURNING order is unspecified
        return claimed

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Record a batch of send outcomes (one transaction; on PostgreSQL the sent ones in one
        statement of their own).

        Only rows still in 'sending' change: a row whose lease expired may have been claimed
        again by another worker; whichever records last wins, and both outcomes are valid
        attempts of the same at-least-once send.
        """
        by_state: dict[State, list[dict[str, object]]] = {}
        for o in outcomes:
            if o.state in (State.SENDING, State.MISSED):
                raise ValueError(f"cannot record outcome {o.state} for delivery {o.delivery_id}")
            params: dict[str, object] = {"id": o.delivery_id, "at": o.at, "error": o.error}
            if o.state is State.PENDING:
                params["retry_at"] = o.at if o.retry_at is None else o.retry_at
            else:
                params["state"] = str(o.state)
            by_state.setdefault(o.state, []).append(params)
        if not by_state:
            return
        where = " WHERE id = :id AND state = 'sending'"
        sent = by_state.get(State.SENT)
        if sent and self.db.dialect == "postgresql":
            # The hot path (every successful send) as one statement, not one per row, in a
            # transaction of its own: each outcome stands alone (an update guarded by state,
            # safe to repeat), so no atomicity is lost and two round trips are saved.
            # Not durable (`Database.execute`): a crash of the database server may undo the
            # last of these, and those rows are sent again; never a send lost (README).
            await self.db.execute(
                "UPDATE deliveries AS d SET state = 'sent', sent_at = u.at,"
                " lease_until = NULL, updated_at = u.at,"
                " last_error = COALESCE(u.error, d.last_error)"
                " FROM unnest(:ids::bigint[], :ats::float8[], :errors::text[])"
                " AS u(id, at, error) WHERE d.id = u.id AND d.state = 'sending'",
                {
                    "ids": [r["id"] for r in sent],
                    "ats": [r["at"] for r in sent],
                    "errors": [r["error"] for r in sent],
                },
                durable=False,
            )
            del by_state[State.SENT]
        if not by_state:
            return
        async with self.db.transaction() as tx:
            for state, rows in by_state.items():
                if state is State.SENT:
                    sql = (
                        "UPDATE deliveries SET state = 'sent', sent_at = :at, lease_until = NULL,"
                        " updated_at = :at, last_error = COALESCE(:error, last_error)"
                    )
                elif state is State.PENDING:
                    sql = (
                        "UPDATE deliveries SET state = 'pending', due_at = :retry_at,"
                        " lease_until = NULL, updated_at = :at,"
                        " last_error = COALESCE(:error, last_error)"
                    )
                else:
                    sql = (
                        "UPDATE deliveries SET state = :state, lease_until = NULL,"
                        " updated_at = :at, last_error = COALESCE(:error, last_error)"
                    )
                await tx.executemany(sql + where, rows)
            failed = [
                {"id": o.delivery_id, "at": o.at, "state": str(o.state), "error": o.error}
                for o in outcomes
                if o.state is not State.SENT and o.error is not None
            ]
            if failed:
                # The history the console shows; in the same transaction as the outcome.
                await tx.executemany(
                    "INSERT INTO delivery_attempts (delivery_id, at, state, error)"
                    " VALUES (:id, :at, :state, :error)",
                    failed,
                )

    async def release(self, claims: Sequence[Delivery], *, now: float) -> int:
        """Hand claimed rows back unsent: pending again, the attempt undone.

        Only a claim still ours changes (same lease): once a lease has run out, another
        worker may hold the row, and its claim must not be taken from it.
        """
        if not claims:
            return 0
        return await self.db.executemany(
            "UPDATE deliveries SET state = 'pending', lease_until = NULL, updated_at = :now,"
            " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"
            " WHERE id = :id AND state = 'sending' AND lease_until = :lease",
            [{"id": c.id, "now": now, "lease": c.lease_until} for c in claims],
        )

    async def renew(
        self, claims: Sequence[Delivery], *, now: float, lease_seconds: float
    ) -> dict[int, float]:
        """Extend the leases of claimed rows to `now + lease_seconds`: {id: new lease_until}.

        Guarded as claims and `release` are: only a row still `sending` under the lease the
        caller holds changes. A row missing from the answer is no longer the caller's (it was
        recorded, or its lease ran out and another worker claimed it): do not send it.
        """
        if not claims:
            return {}
        until = now + lease_seconds
        renewed: dict[int, float] = {}
        async with self.db.transaction() as tx:
            for c in claims:
                if c.lease_until is None:
                    continue
                count = await tx.execute(
                    "UPDATE deliveries SET lease_until = :until"
                    " WHERE id = :id AND state = 'sending' AND lease_until = :lease",
                    {"id": c.id, "until": until, "lease": c.lease_until},
                )
                if count:
                    renewed[c.id] = until
        return renewed

    async def next_due_at(
        self, *, kind: str | None = None, exclude: Collection[str] = ()
    ) -> float | None:
        """The earliest time at which claim() could return something, None if never.

        `exclude`: channels whose rows do not count (those a fair claim leaves out for now).
        """
        where = f" AND {CHANNEL_FILTERS[kind]}" if kind is not None else ""
        params: dict[str, object] = {}
        if exclude:
            clause, params = in_clause("x", sorted(exclude))
            where += f" AND channel NOT IN {clause}"
        row = await self.db.fetchone(
            f"SELECT (SELECT MIN(due_at) FROM deliveries WHERE state = 'pending'{where}),"
            f" (SELECT MIN(lease_until) FROM deliveries WHERE state = 'sending'{where})",
            params or None,
        )
        times = [float(t) for t in (row or ()) if t is not None]
        return min(times) if times else None

    async def outside_commits(self) -> int | None:
        """Changes when another process commits to the ledger (`notifier send` beside
        `notifier run` on SQLite), so that an idle worker can look at once; None if the
        database cannot say (PostgreSQL: the poll interval applies)."""
        return await self.db.data_version()

    # --- reading and operating --------------------------------------------------------------

    async def get(self, id: int) -> Delivery | None:
        row = await self.db.fetchone(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = :id", {"id": id}
        )
        return delivery_from_row(row) if row else None

    async def list_deliveries(
        self, *, state: State | None = None, event: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Newest first (due_at, then id, descending), optionally filtered."""
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            where.append("state = :state")
            params["state"] = str(state)
        if event is not None:
            where.append("event_id = :event")
            params["event"] = event
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY due_at DESC, id DESC LIMIT :limit"
        return [delivery_from_row(r) for r in await self.db.fetchall(sql, params)]

    async def count_by_state(self) -> dict[tuple[str, str], int]:
        """Row counts keyed (state, channel): for status and metrics."""
        rows = await self.db.fetchall(
            "SELECT state, channel, COUNT(*) FROM deliveries GROUP BY state, channel"
        )
        return {(state, channel): int(n) for state, channel, n in rows}

    async def requeue(self, states: Sequence[State], *, now: float) -> int:
        """Rows in these states back to pending, due now, attempts reset; last_error kept.

        'sending' is refused: a live worker holds those rows (an expired lease is reclaimed
        by claim() anyway).
        """
        if State.SENDING in states:
            raise ValueError("cannot requeue 'sending' rows: a worker holds them")
        if not states:
            return 0
        clause, params = in_clause("s", [str(s) for s in dict.fromkeys(states)])
        return await self.db.execute(
            "UPDATE deliveries SET state = 'pending', due_at = :now, attempts = 0,"
            f" lease_until = NULL, updated_at = :now WHERE state IN {clause}",
            {**params, "now": now},
        )

    # --- webhooks ---------------------------------------------------------------------------

    async def accept_hooks(
        self, items: Sequence[tuple[str, str, Sequence[NewDelivery]]], *, now: float
    ) -> list[tuple[list[int], bool]]:
        """Accept many webhook requests in one transaction (group commit).

        Each item is (hook_id, webhook_id, rows), the rows keyed `hook_row_key(hook_id,
        webhook_id, 0..n-1)`. A webhook-id seen before returns the ids of the rows its first
        request made and True, whatever this request holds; a new one inserts its rows and
        returns their ids and False. The first request's row 0 is its receipt; a webhook with
        no rows gets a row in hook_receipts instead, as every webhook did before rows were
        keyed by position (those receipts still replay). Set-based: a handful of statements
        per batch, not per item. No receipt beside the rows: it was a random-position index
        entry per webhook, a third of the WAL pages each commit wrote.

        The first try inserts without looking: a batch rarely holds a redelivery, and looking
        up row 0 first cost 2.5% of an accept. When some rows exist already (a redelivery, or
        another transaction on PostgreSQL that accepted the same webhook-id first and whose key
        the insert waited on), the batch is rolled back and runs again, looking first.
        """
        if not items:
            return []
        # The first occurrence of an id in the batch is its candidate; later ones replay it.
        first: dict[Ident, int] = {}
        for i, (hook_id, webhook_id, rows) in enumerate(items):
            for position, row in enumerate(rows):
                if row.key != hook_row_key(hook_id, webhook_id, position):
                    raise ValueError(f"webhook row {position} is keyed {row.key!r}")
            first.setdefault((hook_id, webhook_id), i)
        look = False
        for _ in range(ACCEPT_TRIES):
            try:
                async with self.db.transaction() as tx:
                    answers, won = await self._accept(tx, items, first, now, look=look)
                break
            except _RowsExist:
                look = True
        else:
            raise StoreError(f"webhook accept lost {ACCEPT_TRIES - 1} races in a row")
        return [
            (answers[(h, w)], not ((h, w) in won and first[(h, w)] == i))
            for i, (h, w, _) in enumerate(items)
        ]

    async def _accept(
        self,
        tx: Tx,
        items: Sequence[tuple[str, str, Sequence[NewDelivery]]],
        first: dict[Ident, int],
        now: float,
        *,
        look: bool,
    ) -> tuple[dict[Ident, list[int]], set[Ident]]:
        # Sorted, so that concurrent batches take the key locks in one order (no deadlock).
        idents = sorted(first)
        answers = await self._receipts(tx, idents)
        # Row 0 of each webhook-id when looking, and of one that brings no rows this time (no
        # insert can tell that it was seen).
        markers = {
            hook_row_key(*ident, 0): ident
            for ident in idents
            if ident not in answers and (look or not items[first[ident]][2])
        }
        for key in await self._ids_by_key(tx, list(markers)):
            answers[markers[key]] = await self._hook_ids(tx, markers[key])
        new = [ident for ident in idents if ident not in answers]
        rows = [row for ident in new for row in items[first[ident]][2]]
        ids = await self._insert_ids(tx, rows, now)
        empty = [ident for ident in new if not items[first[ident]][2]]
        for chunk in _chunks(empty, IN_CHUNK // 3):
            params: dict[str, object] = {"now": now}
            for j, (hook_id, webhook_id) in enumerate(chunk):
                params[f"h{j}"], params[f"w{j}"], params[f"d{j}"] = hook_id, webhook_id, "[]"
            if len(await tx.fetchall(_receipts_sql(len(chunk)), params)) != len(chunk):
                raise _RowsExist
        for ident in new:
            answers[ident] = [ids[row.key] for row in items[first[ident]][2]]
        return answers, set(new)

    async def _receipts(self, tx: Tx, idents: Sequence[Ident]) -> dict[Ident, list[int]]:
        """The answers kept in hook_receipts: webhooks without rows, and older webhooks."""
        if not await tx.fetchone("SELECT 1 FROM hook_receipts LIMIT 1"):
            return {}  # none at all, as in a new ledger: the lookup below cost 10% of an accept
        named: dict[Ident, list[str | int]] = {}
        for chunk in _chunks(idents, IN_CHUNK // 2):
            params: dict[str, object] = {}
            terms = []
            for j, (hook_id, webhook_id) in enumerate(chunk):
                params[f"h{j}"], params[f"w{j}"] = hook_id, webhook_id
                terms.append(f"(hook_id = :h{j} AND webhook_id = :w{j})")
            sql = "SELECT hook_id, webhook_id, deliveries FROM hook_receipts WHERE "
            for hook_id, webhook_id, refs in await tx.fetchall(sql + " OR ".join(terms), params):
                named[(hook_id, webhook_id)] = list(json.loads(refs))
        if not named:
            return {}
        # Receipts name rows by key (version 4) or, before it, by id.
        by_key = await self._ids_by_key(
            tx, [k for refs in named.values() for k in refs if isinstance(k, str)]
        )
        return {
            ident: [
                by_key[k] if isinstance(k, str) else int(k)
                for k in refs
                if not isinstance(k, str) or k in by_key  # a row deleted since: not named
            ]
            for ident, refs in named.items()
        }

    async def _hook_ids(self, tx: Tx, ident: Ident) -> list[int]:
        """The ids of a webhook's rows, in position order (rows are never deleted)."""
        ids: list[int] = []
        while True:
            keys = [hook_row_key(*ident, p) for p in range(len(ids), len(ids) + HOOK_PROBE)]
            found = await self._ids_by_key(tx, keys)
            ids.extend(found[k] for k in keys if k in found)
            if len(found) < HOOK_PROBE:
                return ids

    # --- unsubscribes -----------------------------------------------------------------------

    async def unsubscribe(self, email: str, *, now: float, source: str) -> None:
        """Idempotent: the first unsubscribe (time and source) is kept."""
        await self.db.execute(
            "INSERT INTO unsubscribes (email, created_at, source) VALUES (:e, :now, :source)"
            " ON CONFLICT (email) DO NOTHING",
            {"e": email.strip().lower(), "now": now, "source": source},
        )

    async def unsubscribed(self, emails: Collection[str]) -> set[str]:
        """Those of `emails` (as given) that unsubscribed, compared case-insensitively."""
        by_lower: dict[str, list[str]] = {}
        for e in emails:
            by_lower.setdefault(e.strip().lower(), []).append(e)
        found: set[str] = set()
        for chunk in _chunks(list(by_lower), IN_CHUNK):
            clause, params = in_clause("e", chunk)
            for (email,) in await self.db.fetchall(
                f"SELECT email FROM unsubscribes WHERE email IN {clause}", params
            ):
                found.update(by_lower[email])
        return found

    # --- calendar feeds ---------------------------------------------------------------------

    async def ical_sequences(
        self, digests: Mapping[str, str], *, now: float
    ) -> dict[str, tuple[int, float]]:
        """Each event's (SEQUENCE, changed_at) for the digest it has now: 0 for a UID never
        served, one more than before for a UID whose digest changed, else as it was.

        Only new or changed events are written (a fetch of an unchanged feed writes nothing).
        The bump is conditional on the stored digest, so two instances serving the same change
        bump it once: the second finds the digest already there (PostgreSQL re-checks the
        WHERE after waiting for the first's row lock; SQLite has one writer).
        """
        uids = sorted(digests)
        known = await self._revisions(uids)
        stale = [u for u in uids if u not in known or known[u][0] != digests[u]]
        if stale:
            async with self.db.transaction() as tx:
                await tx.executemany(
                    "INSERT INTO ical_sequences (uid, digest, sequence, changed_at)"
                    " VALUES (:uid, :digest, 0, :now)"
                    " ON CONFLICT (uid) DO UPDATE SET digest = excluded.digest,"
                    " sequence = ical_sequences.sequence + 1, changed_at = excluded.changed_at"
                    " WHERE ical_sequences.digest <> excluded.digest",
                    [{"uid": u, "digest": digests[u], "now": now} for u in stale],
                )
            known.update(await self._revisions(stale))
        return {u: (known[u][1], known[u][2]) for u in uids}

    async def _revisions(self, uids: Sequence[str]) -> dict[str, tuple[str, int, float]]:
        out: dict[str, tuple[str, int, float]] = {}
        for chunk in _chunks(uids, IN_CHUNK):
            clause, params = in_clause("u", chunk)
            for uid, digest, sequence, changed_at in await self.db.fetchall(
                "SELECT uid, digest, sequence, changed_at FROM ical_sequences"
                f" WHERE uid IN {clause}",
                params,
            ):
                out[str(uid)] = (str(digest), int(sequence), float(changed_at))
        return out

    # --- the admins' digest ---------------------------------------------------------------

    async def ended_badly(self, *, since: float, until: float) -> list[EndedRow]:
        """Rows that ended failed, dead or bounced in [since, until), oldest first."""
        rows = await self.db.fetchall(
            "SELECT id, state, event_id, reminder_id, recipient, subject, due_at, last_error"
            " FROM deliveries WHERE state IN ('failed', 'dead', 'bounced')"
            " AND updated_at >= :start AND updated_at < :end ORDER BY updated_at, id",
            {"start": since, "end": until},
        )
        return [
            EndedRow(
                int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), float(r[6]),
                str(r[7] or ""),
            )
            for r in rows
        ]  # fmt: skip

    async def missed_unmade(self, *, since: float, until: float) -> list[MissedSend]:
        """Sends recorded missed in [since, until) because they could not be made.

        Rows recorded missed with a reason are such sends (a send missed in downtime has
        none); one per send, not per recipient.
        """
        rows = await self.db.fetchall(
            "SELECT event_id, occurrence, reminder_id, COUNT(*), MIN(due_at),"
            " MIN(last_error) FROM deliveries WHERE state = 'missed'"
            " AND last_error IS NOT NULL AND updated_at >= :start AND updated_at < :end"
            " GROUP BY event_id, occurrence, reminder_id ORDER BY MIN(due_at), event_id",
            {"start": since, "end": until},
        )
        return [
            MissedSend(str(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4]), str(r[5] or ""))
            for r in rows
        ]

    # --- meta -------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM meta WHERE key = :k", {"k": key})
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self.db.execute(
            "INSERT INTO meta (key, value) VALUES (:k, :v)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            {"k": key, "v": value},
        )

    def describe(self) -> str:
        """The database for logs: dialect and location, never a password."""
        where = getattr(self.db, "name", None) or getattr(self.db, "path", "")
        return f"{self.db.dialect} {where}"

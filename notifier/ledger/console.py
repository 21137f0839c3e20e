"""What the web console reads and writes beside the ledger: sessions, the audit log, and
keyset-paginated views of the deliveries.

Like `store.py`, every time is passed in (`now`): nothing here reads the clock. Pages are
keyed by (due_at, id) of their last row, newest first, so page 1,000 costs what page 1 does
(an OFFSET would read and discard every row before it).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from notifier.keys import HOOK_RECEIPT_LIKE, resend_key
from notifier.ledger.database import Database, Tx
from notifier.ledger.models import Delivery, DeliveryFilter, NewDelivery, State
from notifier.ledger.sql import DELIVERY_COLUMNS
from notifier.ledger.store import Store, delivery_from_row, in_clause

# Audit actions, as stored (the console shows them in words).
AUDIT_ACTIONS = (
    "send_now",
    "retry",
    "resend",
    "resubscribe",
    "unsuppress",
    "sign_in",
    "sign_in_failed",
    "sign_out",
    "import_holidays",
    "create_event",
    "edit_event",
    "delete_event",
    "revert_version",
    "edit_audience",
)
# Rows that retry and resend accept: the ones that will not be sent otherwise.
RETRYABLE = (State.FAILED, State.DEAD)
# PostgreSQL advisory locks of the failed-token limit, as (class, key) pairs: a key space apart
# from migrate()'s one bigint. Class "sign" (ASCII) is keyed by a hash of the scope and client
# address (a collision only makes two addresses wait for each other a moment); class "prun"
# key 0 is the pruning of rows past the window.
SIGNIN_CLIENT_LOCK = 0x7369676E
SIGNIN_PRUNE_LOCK = (0x7072756E, 0)


@dataclass(frozen=True, slots=True)
class SessionRow:
    role: str
    csrf: str
    expires_at: float
    token_fp: str  # the keyed fingerprint of the token it signed in with (auth.py)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One token attempt through the limit: refused unseen (`wait` > 0), or checked (`ok`)."""

    wait: float
    ok: bool


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    role: str
    action: str
    target: str
    detail: str
    client: str


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A schedule file's version to record (migration 0017)."""

    file: str  # relative to the schedules directory
    action: str  # create, edit, delete, revert, outside, initial
    event_id: str  # the event the console edited ("" otherwise)
    events: tuple[str, ...]  # the events whose YAML changed
    role: str
    client: str
    at: float
    hash: str
    content: str
    diff: str


@dataclass(frozen=True, slots=True)
class Version:
    id: int
    file: str
    seq: int
    action: str
    event_id: str
    events: tuple[str, ...]
    role: str
    client: str
    at: float
    hash: str
    content: str
    diff: str


_VERSION_COLUMNS = "id, file, seq, action, event_id, events, role, client, at, hash, content, diff"


def _version(r: Any) -> Version:
    return Version(
        int(r[0]), r[1], int(r[2]), r[3], r[4], tuple(r[5].split()), r[6], r[7], float(r[8]),
        r[9], r[10], r[11],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """One failed attempt of a delivery and what the server or platform answered."""

    at: float
    state: str  # what the attempt left the row in: pending (retried), failed, dead, skipped
    error: str


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Delivery]
    next_cursor: str | None  # opaque; None on the last page


def encode_cursor(due_at: float, id: int) -> str:
    raw = json.dumps([due_at, id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int] | None:
    """The (due_at, id) a cursor names, or None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        due_at, id_ = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(due_at, int | float) or not isinstance(id_, int) or isinstance(id_, bool):
        return None
    return float(due_at), id_


class ConsoleStore:
    """The console's queries over the same `Database` as the ledger's `Store`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- sessions ---------------------------------------------------------------------------

    async def create_session(
        self,
        id_hash: str,
        *,
        role: str,
        csrf: str,
        client: str,
        now: float,
        expires_at: float,
        token_fp: str,
    ) -> None:
        async with self.db.transaction() as tx:
            # Expired rows go when a new one comes: the table stays as small as its users.
            await tx.execute("DELETE FROM console_sessions WHERE expires_at < :now", {"now": now})
            await tx.execute(
                "INSERT INTO console_sessions (id_hash, role, csrf, client, created_at,"
                " expires_at, token_fp) VALUES (:h, :role, :csrf, :client, :now, :exp, :fp)",
                {
                    "h": id_hash,
                    "role": role,
                    "csrf": csrf,
                    "client": client,
                    "now": now,
                    "exp": expires_at,
                    "fp": token_fp,
                },
            )

    async def get_session(self, id_hash: str, *, now: float) -> SessionRow | None:
        row = await self.db.fetchone(
            "SELECT role, csrf, expires_at, token_fp FROM console_sessions"
            " WHERE id_hash = :h AND expires_at > :now",
            {"h": id_hash, "now": now},
        )
        if row is None:
            return None
        return SessionRow(str(row[0]), str(row[1]), float(row[2]), str(row[3]))

    async def delete_session(self, id_hash: str) -> None:
        await self.db.execute("DELETE FROM console_sessions WHERE id_hash = :h", {"h": id_hash})

    # --- one-time sign-in links -------------------------------------------------------------

    async def create_signin_link(self, token_hash: str, *, now: float, expires_at: float) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM signin_links WHERE expires_at <= :now", {"now": now})
            await tx.execute(
                "INSERT INTO signin_links (token_hash, expires_at) VALUES (:h, :exp)",
                {"h": token_hash, "exp": expires_at},
            )

    async def use_signin_link(self, token_hash: str, *, now: float) -> bool:
        """Whether the link was valid; it is deleted either way (once means once, even when
        two instances are asked at the same moment: one DELETE finds the row)."""
        async with self.db.transaction() as tx:
            used = await tx.execute(
                "DELETE FROM signin_links WHERE token_hash = :h AND expires_at > :now",
                {"h": token_hash, "now": now},
            )
            await tx.execute("DELETE FROM signin_links WHERE expires_at <= :now", {"now": now})
        return used == 1

    # --- the failed-token limit -------------------------------------------------------------

    async def try_token(
        self,
        scope: str,
        client: str,
        *,
        now: float,
        limit: int,
        window: float,
        check: Callable[[], bool],
    ) -> Attempt:
        """One attempt of `client` at the secret of `scope`: `check` says if its token is right.

        Refused without calling `check` when `client` has `limit` failures of `scope` in the
        `window` seconds before `now` (`wait`: until the oldest of them leaves). Otherwise a
        wrong token is recorded as a failure; a right one writes nothing and clears nothing,
        so a success with one token (a viewer's, a calendar client's) cannot reset the count
        of someone guessing another. The count, the check and the insert run under one lock
        per (scope, address) (PostgreSQL: an advisory lock; SQLite: its write lock): attempts
        made at the same moment, on one instance or several, cannot all pass one count. Rows
        past the window are deleted on the way.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        since = now - window
        async with self.db.transaction() as tx:
            pruning = await self._lock_signins(tx, f"{scope}\n{client}")
            # The limit-th newest failure in the window, if there are that many: the address
            # may try again when it leaves the window.
            row = await tx.fetchone(
                "SELECT at FROM signin_failures WHERE scope = :scope AND client = :client"
                " AND at > :since ORDER BY at DESC LIMIT 1 OFFSET :skip",
                {"scope": scope, "client": client, "since": since, "skip": limit - 1},
            )
            if row is not None:
                # Positive, as the row is in the window (the floor: a rounding to zero).
                return Attempt(wait=max(float(row[0]) + window - now, 1e-3), ok=False)
            if check():
                return Attempt(wait=0.0, ok=True)
            await tx.execute(
                "INSERT INTO signin_failures (scope, client, at) VALUES (:scope, :client, :now)",
                {"scope": scope, "client": client, "now": now},
            )
            if pruning:
                await tx.execute("DELETE FROM signin_failures WHERE at <= :since", {"since": since})
        return Attempt(wait=0.0, ok=False)

    async def signin_failures(self) -> int:
        """Rows in the limit's table (all addresses): what pruning keeps small."""
        row = await self.db.fetchone("SELECT COUNT(*) FROM signin_failures")
        return int(row[0]) if row else 0

    async def _lock_signins(self, tx: Tx, client: str) -> bool:
        """Take the address's lock; then try the pruning lock, without waiting for it.

        Whether this transaction may delete other addresses' rows. Only one transaction at
        a time deletes rows on PostgreSQL, so two never wait for each other's rows (the
        deadlock PostgreSQL would end after a second with an error). SQLite: the transaction
        holds the one write lock already.
        """
        if self.db.dialect != "postgresql":
            return True
        lock = "SELECT {}(CAST(:cls AS INTEGER), CAST(:key AS INTEGER))"
        key = int.from_bytes(hashlib.sha256(client.encode()).digest()[:4], "big", signed=True)
        await tx.fetchone(
            lock.format("pg_advisory_xact_lock"), {"cls": SIGNIN_CLIENT_LOCK, "key": key}
        )
        cls, key = SIGNIN_PRUNE_LOCK
        row = await tx.fetchone(lock.format("pg_try_advisory_xact_lock"), {"cls": cls, "key": key})
        return bool(row and row[0])

    # --- audit ------------------------------------------------------------------------------

    async def audit(
        self, action: str, *, role: str, target: str, detail: str, client: str, now: float
    ) -> None:
        if action not in AUDIT_ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        await self.db.execute(
            "INSERT INTO audit_log (at, role, action, target, detail, client)"
            " VALUES (:at, :role, :action, :target, :detail, :client)",
            {
                "at": now,
                "role": role,
                "action": action,
                "target": target,
                "detail": detail,
                "client": client,
            },
        )

    async def audit_entries(
        self, *, limit: int = 100, target: str | None = None
    ) -> list[AuditEntry]:
        sql = "SELECT id, at, role, action, target, detail, client FROM audit_log"
        params: dict[str, Any] = {"limit": limit}
        if target is not None:
            sql += " WHERE target = :target"
            params["target"] = target
        sql += " ORDER BY at DESC, id DESC LIMIT :limit"
        return [
            AuditEntry(int(r[0]), float(r[1]), r[2], r[3], r[4], r[5], r[6])
            for r in await self.db.fetchall(sql, params)
        ]

    # --- schedule versions (migration 0017) ---

    async def latest_versions(self) -> dict[str, tuple[int, str]]:
        """Each file's last version: its seq and its text's hash."""
        rows = await self.db.fetchall(
            "SELECT v.file, v.seq, v.hash FROM schedule_versions v JOIN"
            " (SELECT file, MAX(seq) AS seq FROM schedule_versions GROUP BY file) m"
            " ON v.file = m.file AND v.seq = m.seq"
        )
        return {r[0]: (int(r[1]), r[2]) for r in rows}

    async def recent_saves(self, *, since: float) -> set[str]:
        """Files saved through the console since `since` (a save records its version just
        before it writes the file)."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT file FROM schedule_versions"
            " WHERE at >= :since AND action NOT IN ('outside', 'initial')",
            {"since": since},
        )
        return {r[0] for r in rows}

    async def add_version(self, v: NewVersion, *, seq: int) -> int | None:
        """Record `v` as its file's version `seq`; None if that seq is taken (another
        instance recorded the same change first)."""
        added = await self.db.execute(
            "INSERT INTO schedule_versions"
            " (file, seq, action, event_id, events, role, client, at, hash, content, diff)"
            " VALUES (:file, :seq, :action, :event_id, :events, :role, :client, :at, :hash,"
            " :content, :diff) ON CONFLICT (file, seq) DO NOTHING",
            {
                "file": v.file,
                "seq": seq,
                "action": v.action,
                "event_id": v.event_id,
                "events": " " + " ".join(v.events) + " ",
                "role": v.role,
                "client": v.client,
                "at": v.at,
                "hash": v.hash,
                "content": v.content,
                "diff": v.diff,
            },
        )
        if not added:
            return None
        row = await self.db.fetchone(
            "SELECT id FROM schedule_versions WHERE file = :file AND seq = :seq",
            {"file": v.file, "seq": seq},
        )
        return int(row[0]) if row else None

    async def remove_version(self, version_id: int) -> None:
        """Take back a version whose save the reload refused (the file is as before)."""
        await self.db.execute("DELETE FROM schedule_versions WHERE id = :id", {"id": version_id})

    async def version(self, version_id: int) -> Version | None:
        row = await self.db.fetchone(
            f"SELECT {_VERSION_COLUMNS} FROM schedule_versions WHERE id = :id",
            {"id": version_id},
        )
        return _version(row) if row else None

    async def version_with_hash(self, file: str, digest: str) -> Version | None:
        row = await self.db.fetchone(
            f"SELECT {_VERSION_COLUMNS} FROM schedule_versions"
            " WHERE file = :file AND hash = :hash ORDER BY seq DESC LIMIT 1",
            {"file": file, "hash": digest},
        )
        return _version(row) if row else None

    async def versions(
        self, *, file: str | None = None, event: str | None = None, limit: int = 200
    ) -> list[Version]:
        """Newest first: one file's versions, or those that changed one event."""
        sql = f"SELECT {_VERSION_COLUMNS} FROM schedule_versions"
        params: dict[str, Any] = {"limit": limit}
        if file is not None:
            sql += " WHERE file = :file"
            params["file"] = file
        elif event is not None:
            sql += " WHERE events LIKE :pattern OR event_id = :event"
            params["pattern"] = f"% {event} %"
            params["event"] = event
        sql += " ORDER BY at DESC, id DESC LIMIT :limit"
        return [_version(r) for r in await self.db.fetchall(sql, params)]

    async def failed_attempts(self, delivery_id: int, *, limit: int = 100) -> list[FailedAttempt]:
        """The delivery's failed attempts, oldest first (`Store.record` writes them)."""
        rows = await self.db.fetchall(
            "SELECT at, state, error FROM delivery_attempts WHERE delivery_id = :id"
            " ORDER BY at, id LIMIT :limit",
            {"id": delivery_id, "limit": limit},
        )
        return [FailedAttempt(float(r[0]), r[1], r[2] or "") for r in rows]

    # --- deliveries -------------------------------------------------------------------------

    async def deliveries_page(
        self, filters: DeliveryFilter, *, after: tuple[float, int] | None, limit: int
    ) -> Page:
        """Newest first by (due_at, id); `after` is the previous page's last key."""
        where, params = filters.where()
        params["limit"] = limit + 1
        if after is not None:
            # Spelled out rather than a row value, which PostgreSQL and SQLite both plan as an
            # index range only in recent versions; the first term bounds the range scan.
            where.append("due_at <= :a_due AND (due_at < :a_due OR id < :a_id)")
            params["a_due"], params["a_id"] = after
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY due_at DESC, id DESC LIMIT :limit"
        rows = [delivery_from_row(r) for r in await self.db.fetchall(sql, params)]
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = encode_cursor(rows[-1].due_at, rows[-1].id) if more and rows else None
        return Page(rows, cursor)

    async def hook_accepts(self, *, since: float, until: float) -> int:
        """Webhooks accepted in the window: their row 0 (due when accepted) counts each."""
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM deliveries WHERE due_at >= :since AND due_at < :until"
            " AND source = 'hook' AND key LIKE :receipt",
            {"since": since, "until": until, "receipt": HOOK_RECEIPT_LIKE},
        )
        return int(row[0]) if row else 0

    async def recent_hook_rows(self, hook_id: str, *, limit: int = 5) -> list[Delivery]:
        """The latest rows of one hook (event_id `hook:<id>`), newest first."""
        return (
            await self.deliveries_page(
                DeliveryFilter(event=f"hook:{hook_id}"), after=None, limit=limit
            )
        ).rows

    async def retry(self, id: int, *, now: float) -> bool:
        """A failed or dead row back to pending, due now, attempts reset; False if not one."""
        clause, params = in_clause("s", [str(s) for s in RETRYABLE])
        changed = await self.db.execute(
            "UPDATE deliveries SET state = 'pending', due_at = :now, attempts = 0,"
            f" lease_until = NULL, updated_at = :now WHERE id = :id AND state IN {clause}",
            {**params, "id": id, "now": now},
        )
        return changed == 1

    async def resend(self, row: Delivery, *, now: float, store: Store) -> int | None:
        """A new pending row with the same message, keyed after the old one; its id.

        The old row keeps its state and history: the ledger says both what failed and
        what was sent again. None when the row is not failed or dead.
        """
        if row.state not in RETRYABLE:
            return None
        key = resend_key(row.key, now)
        new = NewDelivery(
            key=key,
            event_id=row.event_id,
            occurrence=row.occurrence,
            reminder_id=row.reminder_id,
            recipient=row.recipient,
            channel=row.channel,
            due_at=now,
            message_id=row.message_id,
            subject=row.subject,
            message=row.message,
            source="manual",
            external=row.external,
        )
        await store.enqueue([new], now=now)
        ids = await store.ids_for_keys([key])
        return ids[0] if ids else None

    # --- audiences --------------------------------------------------------------------------

    async def unsubscribes(self, *, limit: int = 500) -> list[tuple[str, float, str]]:
        rows = await self.db.fetchall(
            "SELECT email, created_at, source FROM unsubscribes"
            " ORDER BY created_at DESC LIMIT :limit",
            {"limit": limit},
        )
        return [(str(e), float(at), str(src)) for e, at, src in rows]

    async def resubscribe(self, email: str) -> bool:
        changed = await self.db.execute(
            "DELETE FROM unsubscribes WHERE email = :e", {"e": email.strip().lower()}
        )
        return changed == 1

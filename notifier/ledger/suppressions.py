"""The suppression list (migration 0016): addresses that do not exist, learned from a 5xx at
send time or from a bounce read back later. Outreach skips them; staff mail does not (the
admins' digest names them instead)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from notifier.ledger.database import Database

# Of a server's reply or a bounce, the part kept (the console shows it as the excerpt).
EXCERPT_CHARS = 2000
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Suppression:
    address: str
    reason: str
    excerpt: str
    source: str  # "smtp" (refused at send time) | "bounce" (read back over IMAP)
    delivery_id: int | None
    first_at: float
    last_at: float


class SuppressionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def suppress(
        self,
        address: str,
        *,
        reason: str,
        excerpt: str,
        source: str,
        delivery_id: int | None,
        now: float,
    ) -> None:
        """Add `address` (lower-cased), or note that it bounced again (last time, reason)."""
        await self.db.execute(
            "INSERT INTO suppressions"
            " (address, reason, excerpt, source, delivery_id, first_at, last_at)"
            " VALUES (:address, :reason, :excerpt, :source, :delivery_id, :now, :now)"
            " ON CONFLICT (address) DO UPDATE SET reason = :reason, excerpt = :excerpt,"
            " source = :source, last_at = :now",
            {
                "address": address.strip().lower(),
                "reason": reason[:500],
                "excerpt": excerpt[:EXCERPT_CHARS],
                "source": source,
                "delivery_id": delivery_id,
                "now": now,
            },
        )

    async def suppressed(self, emails: Collection[str]) -> dict[str, str]:
        """Those of `emails` (lower-cased) on the list, with their reason."""
        wanted = sorted({e.strip().lower() for e in emails})
        found: dict[str, str] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            names = ", ".join(f":a{i}" for i in range(len(chunk)))
            rows = await self.db.fetchall(
                f"SELECT address, reason FROM suppressions WHERE address IN ({names})",
                {f"a{i}": a for i, a in enumerate(chunk)},
            )
            found.update({str(r[0]): str(r[1]) for r in rows})
        return found

    async def entries(self, *, limit: int = 500) -> list[Suppression]:
        """The list, the latest bounce first."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM suppressions ORDER BY last_at DESC, address LIMIT :limit",
            {"limit": limit},
        )
        return [_suppression(r) for r in rows]

    async def remove(self, address: str) -> bool:
        """Take `address` off the list; False if it was not on it."""
        count = await self.db.execute(
            "DELETE FROM suppressions WHERE address = :address",
            {"address": address.strip().lower()},
        )
        return count > 0

    async def bounced_since(self, since: float, until: float) -> list[Suppression]:
        """Addresses that bounced in [since, until) (the admins' digest)."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM suppressions"
            " WHERE last_at >= :since AND last_at < :until ORDER BY address",
            {"since": since, "until": until},
        )
        return [_suppression(r) for r in rows]


_COLUMNS = "address, reason, excerpt, source, delivery_id, first_at, last_at"


def _suppression(r: Sequence[Any]) -> Suppression:
    """A row of `_COLUMNS`."""
    return Suppression(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        None if r[4] is None else int(r[4]),
        float(r[5]),
        float(r[6]),
    )


@dataclass(frozen=True, slots=True)
class Returned:
    """A ledger row a bounce returned (matched by its Message-ID)."""

    id: int
    recipient: str
    state: str
    external: bool


class BounceLedger:
    """What the bounce reader needs of the ledger: find a returned row, mark it."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def returned(
        self, message_ids: Collection[str], our_ids: Collection[str]
    ) -> Returned | None:
        """The row whose Message-ID is one of `message_ids`, or whose Message-ID's local part
        is one of `our_ids` (our X-Notifier-Id header, for a provider that rewrote it)."""
        ids = [m for m in message_ids if len(m) <= 300][:20]
        locals_ = [o for o in our_ids if o.isalnum()][:20]
        clauses, params = [], {}
        if ids:
            names = ", ".join(f":m{i}" for i in range(len(ids)))
            clauses.append(f"message_id IN ({names})")
            params.update({f"m{i}": m for i, m in enumerate(ids)})
        for i, local in enumerate(locals_):
            clauses.append(f"message_id LIKE :o{i}")
            params[f"o{i}"] = f"<{local}@%"
        if not clauses:
            return None
        row = await self.db.fetchone(
            "SELECT id, recipient, state, external FROM deliveries"
            f" WHERE {' OR '.join(clauses)} ORDER BY id LIMIT 1",
            params,
        )
        if row is None:
            return None
        return Returned(int(row[0]), str(row[1]), str(row[2]), bool(row[3]))

    async def mark(self, delivery_id: int, *, hard: bool, error: str, now: float) -> None:
        """A hard bounce ends the row `bounced` (a sent row too: it never arrived); a soft one
        is noted on it. Either way the bounce joins the row's attempt history."""
        async with self.db.transaction() as tx:
            if hard:
                await tx.execute(
                    "UPDATE deliveries SET state = 'bounced', last_error = :error,"
                    " updated_at = :now WHERE id = :id AND state <> 'pending'"
                    " AND state <> 'sending'",
                    {"id": delivery_id, "error": error, "now": now},
                )
            else:
                await tx.execute(
                    "UPDATE deliveries SET last_error = :error WHERE id = :id",
                    {"id": delivery_id, "error": error},
                )
            await tx.execute(
                "INSERT INTO delivery_attempts (delivery_id, at, state, error)"
                " VALUES (:id, :now, :state, :error)",
                {
                    "id": delivery_id,
                    "now": now,
                    "state": "bounced" if hard else "soft-bounce",
                    "error": error,
                },
            )

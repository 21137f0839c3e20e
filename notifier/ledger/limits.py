"""A mail account's limits in the ledger: quota counters, throttle pauses and the rows waiting
for them (migration 0016). Shared by every instance on the same database.

Kept apart from `store.py` (the claim and record path): these statements run once per send
only for an account that has limits, and never inside the claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from notifier.ledger.database import Database, Tx
from notifier.ledger.models import Delivery

# Counters of windows that ended this long ago are deleted (when a day window starts).
QUOTA_KEEP_SECONDS = 2 * 86400.0


@dataclass(frozen=True, slots=True)
class Window:
    """One quota window of an account: at most `limit` sends in [start, start + seconds)."""

    seconds: int
    start: float
    end: float  # start + seconds, but a local day may be 23 or 25 hours long
    limit: int
    label: str  # "500/hour", for the row's waiting reason


@dataclass(frozen=True, slots=True)
class Pause:
    until: float
    level: int
    reason: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """A pending row put back to wait for a quota window or a pause (no attempt spent)."""

    until: float
    reason: str


class _Full(Exception):
    """A window is full: roll the transaction back (the windows taken before it too)."""

    def __init__(self, window: Window) -> None:
        super().__init__(window.label)
        self.window = window


class LimitStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def take(
        self, channel: str, windows: Sequence[Window], *, now: float
    ) -> Pause | Window | None:
        """Count one send of `channel` in each of `windows`, all or none: None if taken; the
        pause in force, or the first full window, if not (nothing counted then).

        Each window is one conditional upsert (`used < limit`), in one transaction: another
        instance taking the same window waits on its row (PostgreSQL) or on the write lock
        (SQLite), so the count never passes the limit, whatever the number of instances.
        """
        try:
            async with self.db.transaction() as tx:
                pause = await self._pause(tx, channel, now)
                if pause is not None:
                    return pause
                for w in windows:
                    row = await tx.fetchone(
                        "INSERT INTO send_quotas (channel, window_seconds, window_start, used)"
                        " VALUES (:channel, :seconds, :start, 1)"
                        " ON CONFLICT (channel, window_seconds, window_start) DO UPDATE"
                        " SET used = send_quotas.used + 1 WHERE send_quotas.used < :limit"
                        " RETURNING used",
                        {
                            "channel": channel,
                            "seconds": w.seconds,
                            "start": w.start,
                            "limit": w.limit,
                        },
                    )
                    if row is None:
                        raise _Full(w)
                    if int(row[0]) == 1 and w is windows[-1]:
                        # A new longest window: forget the old ones (a few rows a day).
                        await tx.execute(
                            "DELETE FROM send_quotas WHERE channel = :channel"
                            " AND window_start < :old",
                            {"channel": channel, "old": now - QUOTA_KEEP_SECONDS},
                        )
        except _Full as full:
            return full.window
        return None

    async def pause_of(self, channel: str, *, now: float) -> Pause | None:
        """The pause in force for `channel` at `now`, if any."""
        async with self.db.transaction() as tx:
            return await self._pause(tx, channel, now)

    @staticmethod
    async def _pause(tx: Tx, channel: str, now: float) -> Pause | None:
        row = await tx.fetchone(
            "SELECT until, level, reason FROM channel_pauses WHERE channel = :channel",
            {"channel": channel},
        )
        if row is None or float(row[0]) <= now:
            return None
        return Pause(float(row[0]), int(row[1]), str(row[2]))

    async def last_pause(self, channel: str) -> Pause | None:
        """The channel's latest pause, over or not (its level sets the next one's length)."""
        row = await self.db.fetchone(
            "SELECT until, level, reason FROM channel_pauses WHERE channel = :channel",
            {"channel": channel},
        )
        return None if row is None else Pause(float(row[0]), int(row[1]), str(row[2]))

    async def pause(self, channel: str, pause: Pause, *, now: float) -> Pause:
        """Pause `channel` until `pause.until`, unless a longer pause is already in force
        (another instance met the same throttle): the pause in force afterwards."""
        async with self.db.transaction() as tx:
            current = await self._pause(tx, channel, now)
            if current is not None and current.until >= pause.until:
                return current
            await tx.execute(
                "INSERT INTO channel_pauses (channel, until, level, reason, updated_at)"
                " VALUES (:channel, :until, :level, :reason, :now)"
                " ON CONFLICT (channel) DO UPDATE SET until = :until, level = :level,"
                " reason = :reason, updated_at = :now",
                {
                    "channel": channel,
                    "until": pause.until,
                    "level": pause.level,
                    "reason": pause.reason,
                    "now": now,
                },
            )
        return pause

    async def defer(
        self, rows: Sequence[Delivery], *, until: float, reason: str, now: float
    ) -> int:
        """Put claimed rows back unsent, due at `until`, the claim's attempt undone, and note
        why they wait. Guarded by the lease, as `Store.release` is: a row whose lease ran out
        may be another worker's now. Returns the rows put back."""
        if not rows:
            return 0
        async with self.db.transaction() as tx:
            changed = await tx.executemany(
                "UPDATE deliveries SET state = 'pending', due_at = :until, lease_until = NULL,"
                " updated_at = :now,"
                " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"
                " WHERE id = :id AND state = 'sending' AND lease_until = :lease",
                [{"id": r.id, "until": until, "now": now, "lease": r.lease_until} for r in rows],
            )
            await tx.executemany(
                "INSERT INTO quota_waits (delivery_id, until, reason) VALUES (:id, :until, :reason)"
                " ON CONFLICT (delivery_id) DO UPDATE SET until = :until, reason = :reason",
                [{"id": r.id, "until": until, "reason": reason} for r in rows],
            )
        return changed

    async def waiting(self, ids: Sequence[int]) -> dict[int, Waiting]:
        """Of `ids`, the rows still waiting: pending and due when their wait ends."""
        if not ids:
            return {}
        out: dict[int, Waiting] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            names = ", ".join(f":i{i}" for i in range(len(chunk)))
            rows = await self.db.fetchall(
                "SELECT w.delivery_id, w.until, w.reason FROM quota_waits w"
                " JOIN deliveries d ON d.id = w.delivery_id"
                f" WHERE w.delivery_id IN ({names})"
                " AND d.state = 'pending' AND d.due_at = w.until",
                {f"i{i}": v for i, v in enumerate(chunk)},
            )
            out.update({int(r[0]): Waiting(float(r[1]), str(r[2])) for r in rows})
        return out

    async def waiting_count(self) -> dict[str, int]:
        """Pending rows waiting for a quota or a pause, by channel (for `status`)."""
        rows = await self.db.fetchall(
            "SELECT d.channel, COUNT(*) FROM quota_waits w JOIN deliveries d"
            " ON d.id = w.delivery_id WHERE d.state = 'pending' AND d.due_at = w.until"
            " GROUP BY d.channel"
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def waiting_rows(self, *, limit: int) -> list[tuple[int, Waiting]]:
        """The rows still waiting, the first to go first (`status`): row id, until, why."""
        rows = await self.db.fetchall(
            "SELECT w.delivery_id, w.until, w.reason FROM quota_waits w"
            " JOIN deliveries d ON d.id = w.delivery_id"
            " WHERE d.state = 'pending' AND d.due_at = w.until"
            " ORDER BY w.until, w.delivery_id LIMIT :limit",
            {"limit": limit},
        )
        return [(int(r[0]), Waiting(float(r[1]), str(r[2]))) for r in rows]

    async def first_wait(self) -> tuple[int, float | None]:
        """How many rows wait, and when the first of them goes (`upcoming`'s last line)."""
        row = await self.db.fetchone(
            "SELECT COUNT(*), MIN(w.until) FROM quota_waits w JOIN deliveries d"
            " ON d.id = w.delivery_id WHERE d.state = 'pending' AND d.due_at = w.until"
        )
        if row is None or not row[0]:
            return 0, None
        return int(row[0]), float(row[1])

    async def used(self, channel: str, seconds: int, start: float) -> int:
        """Sends counted in one window (tests, the console)."""
        row = await self.db.fetchone(
            "SELECT used FROM send_quotas WHERE channel = :c AND window_seconds = :s"
            " AND window_start = :start",
            {"c": channel, "s": seconds, "start": start},
        )
        return 0 if row is None else int(row[0])

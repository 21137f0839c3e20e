"""Fair pacing between chat robots: a paced robot's backlog must not hold up another robot.

A fair worker (the chat worker: many robots, each with its own pace) claims a paced robot's
row only when that robot's pace has room, and holds at most `PACED_HOLD` of its rows at once;
the other rows of its backlog stay in the ledger. So one robot's backlog of 200 at 20 a minute
neither fills the claim nor sits in every lane waiting on its pace, and another robot's row
due meanwhile is claimed by the next claim and finds a free lane. The lanes stay as they are
(one queue; the pace is still taken right before the send, so sends stay spaced by it), and
the fairness lives in the claim (`Store.claim(per_channel=...)`): smaller than queues per
channel in the worker, and rows a worker does not send soon are not hidden from the others.
The worker wakes for the claim when a robot it left out has room again: when one of its held
rows is done (`released`), or when its pace's gap has run out (`wait`: a timer, never a poll).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable

from aiolimiter import AsyncLimiter

from notifier.channels.base import Channel
from notifier.constants import PACE_ROUNDING_SECONDS, PACED_HOLD
from notifier.ledger.models import Delivery

# A row's channel and the pace that channel keeps (None: no pace), chosen per row.
Router = Callable[[Delivery], tuple[Channel, AsyncLimiter | None]]


class FairPacing:
    """What the next claim may take of each channel, and when a channel left out has room."""

    def __init__(self, router: Router | None) -> None:
        self.router = router
        self._seen: dict[str, Delivery] = {}  # a row of each channel claimed, to route by name
        self._paced_at: dict[str, tuple[AsyncLimiter, float]] = {}  # last pace taken (loop time)
        self._capped: set[str] = set()  # left out of the last claim for their held rows
        self._pace_bound: set[str] = set()  # left out of the last claim: their pace is full
        self._pace_wait: float | None = None  # seconds until the first of those has room

    def reset(self) -> None:
        """A new run: nothing is left out."""
        self._capped, self._pace_bound, self._pace_wait = set(), set(), None

    def saw(self, row: Delivery) -> None:
        """A claimed row: its channel is known from now on (routed by this sample)."""
        self._seen.setdefault(row.channel, row)

    def took(self, channel: str, pace: AsyncLimiter) -> None:
        """A send of `channel` just took a token of `pace`."""
        self._paced_at[channel] = (pace, asyncio.get_running_loop().time())

    def rooms(self, held: Iterable[Delivery], room: int) -> dict[str, int]:
        """How many rows of each channel seen the next claim may take; a channel not seen yet
        gets `PACED_HOLD` (it may be paced), until its first row says what it is.

        A paced channel: none while it holds `PACED_HOLD` rows (woken by `released`) or while
        its pace is full (woken after `wait`); an unpaced one: any number. Routed afresh each
        time, so a reload's new pace counts.
        """
        assert self.router is not None, "a fair worker routes its rows"
        counts = Counter(r.channel for r in held)
        clock = asyncio.get_running_loop().time()
        rooms: dict[str, int] = {}
        capped: set[str] = set()
        bound: dict[str, float] = {}
        for name, sample in self._seen.items():
            _, pace = self.router(sample)
            if pace is None:
                rooms[name] = room
            elif counts[name] >= PACED_HOLD:
                rooms[name] = 0
                capped.add(name)
            elif not pace.has_capacity():
                rooms[name] = 0
                bound[name] = self._room_in(name, pace, clock)
            else:
                rooms[name] = PACED_HOLD - counts[name]
        # Set before the claim's await: a row done meanwhile finds its channel here.
        self._capped, self._pace_bound = capped, set(bound)
        self._pace_wait = min(bound.values(), default=None)
        return rooms

    def _room_in(self, name: str, pace: AsyncLimiter, clock: float) -> float:
        """Seconds until a full pace has room again: one drip of its bucket after our last
        take; a drip from now if someone else took it (then it has room within a drip)."""
        drip = pace.time_period / pace.max_rate
        taken = self._paced_at.get(name)
        if taken is not None and taken[0] is pace:
            wait = taken[1] + drip - clock
            if wait > 0:
                return wait + PACE_ROUNDING_SECONDS
        return max(drip, PACE_ROUNDING_SECONDS)

    def released(self, channel: str) -> bool:
        """A held row of `channel` is done. True if the channel was left out of the last claim
        for the rows it held: it has room now, so claim again."""
        if channel in self._capped:
            self._capped.discard(channel)
            return True
        return False

    def left_out(self) -> set[str]:
        """The channels the last claim left out for now (their rows may well be due)."""
        return self._capped | self._pace_bound

    @property
    def wait(self) -> float | None:
        """Seconds until a channel left out for its full pace has room; None if none is."""
        return self._pace_wait if self._pace_bound else None

"""A mail account's real limits: quotas per second, minute, hour and (local) day, shared by
every instance on the database, and pauses after a throttle reply.

Hosted enterprise mail (Tencent Exmail, Aliyun, 网易) limits each account per minute, hour and
day without publishing the figures, and past them answers 421/450/451/452/454/550 with texts
such as "too frequently sending" or "Reject by behaviour spam". Spending a message's retries
against such a limit ends a campaign `dead` (listmonk #2273); a limit kept per process lets
three instances send three times the quota (Mailtrain #1188). So:

- `QuotaGate.admit`, before a send: one shared counter per window (`LimitStore.take`); a row
  over the quota is put back pending, due when its window ends, its attempt not spent.
- `QuotaGate.throttled`, after a send refused with a throttle reply: the whole account
  pauses (1 min doubling to 1 h, or to the next local midnight when the reply says the day's
  quota is gone), the row is put back the same way, and every instance waits out the pause.

Pure parts (`windows`, `is_throttle`, `is_daily`) take `now`; the gate reads nothing else.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from notifier.channels.base import Channel, TransportError
from notifier.channels.email import SmtpChannel
from notifier.config import Rate, SmtpSettings, parse_limits
from notifier.ledger.limits import LimitStore, Pause, Window
from notifier.ledger.models import Delivery

# SMTP replies that may mean "this account is sending too much": a pause only with one of the
# phrases below, since a plain 451 is as often greylisting or a busy disk (a retry of the one
# message is the right answer to those).
THROTTLE_CODES = frozenset({421, 450, 451, 452, 454, 550, 554})

# What the providers say when they throttle an account (lower-case; matched as substrings).
# English: Exmail, Aliyun, 网易, Outlook/Exchange Online, Gmail, Postfix's own limits.
THROTTLE_PHRASES = (
    "too frequently", "too frequent", "frequency limit", "frequency", "too many messages",
    "too many mails", "too many emails", "too many connections", "too many recipients",
    "rate limit", "ratelimit", "rate-limit", "throttl", "sending limit", "send limit",
    "limit exceeded", "exceeded the", "quota exceeded", "exceeds quota", "over quota",
    "behaviour spam", "behavior spam", "antispam_bat", "mailbox is sending too much",
    "发送频率", "频率过快", "频率过高", "过于频繁", "太频繁", "发信频率", "超过发送限制",
    "超出发送限制", "超过限制", "超出限制", "发送上限", "发信上限", "发送量", "发信量",
    "超过配额", "超出配额",
)  # fmt: skip

# Phrases that say the day's quota is gone: pause to the next local midnight, not 1 min.
DAILY_PHRASES = (
    "daily", "per day", "a day", "today", "24 hour", "24-hour", "day limit", "dayquota",
    "今日", "今天", "每日", "每天", "当日", "当天", "日发送", "日发信", "日限额",
)  # fmt: skip

# A wait this short (a per-second window's end) is slept in the lane, the row kept.
QUOTA_SLEEP_SECONDS = 2.0

_CODE = re.compile(r"^\s*(\d{3})\b")


@dataclass(frozen=True, slots=True)
class Wait:
    """Why a row waits and until when (POSIX seconds)."""

    until: float
    reason: str


def windows(rates: Sequence[Rate], now: float, tz: ZoneInfo) -> list[Window]:
    """The window of each rate that `now` falls in, shortest first. Seconds, minutes and hours
    are aligned on the epoch; a day is the local day (providers reset at local midnight)."""
    out = []
    for rate in rates:
        if rate.window == "day":
            day = datetime.fromtimestamp(now, tz).date()
            start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
            nxt = day + timedelta(days=1)
            end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()
        else:
            start = math.floor(now / rate.seconds) * rate.seconds
            end = start + rate.seconds
        out.append(Window(rate.seconds, start, end, rate.count, str(rate)))
    return out


def reply_code(error: TransportError) -> int | None:
    """The SMTP reply code of a failed send, if it had one."""
    code = error.code if error.code is not None else error.message
    m = _CODE.match(code)
    return int(m.group(1)) if m else None


def is_throttle(error: TransportError) -> bool:
    """Does the server say the account sends too much (not: this one message failed)?"""
    code = reply_code(error)
    if code not in THROTTLE_CODES:
        return False
    text = error.message.lower()
    return any(p in text for p in THROTTLE_PHRASES)


def is_daily(error: TransportError) -> bool:
    """Does a throttle reply say the day's quota is gone?"""
    text = error.message.lower()
    return any(p in text for p in DAILY_PHRASES)


def next_midnight(now: float, tz: ZoneInfo) -> float:
    day = datetime.fromtimestamp(now, tz).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def account_of(channel: Channel) -> SmtpSettings | None:
    """The account settings of a mail channel; None for any other (no quota, no pause)."""
    return channel.settings if isinstance(channel, SmtpChannel) else None


class QuotaGate:
    """The worker's one check before a send, and its answer to a throttle reply after one."""

    def __init__(
        self,
        limits: LimitStore,
        *,
        tz: ZoneInfo,
        clock: Callable[[], float] = time.time,
        recheck: float = 1.0,
    ) -> None:
        self.limits = limits
        self.tz = tz
        self.clock = clock
        # Seconds between looks for another instance's pause on an account without quotas
        # (with quotas, the look is part of taking the quota: every send).
        self.recheck = recheck
        self._known: dict[str, Wait] = {}  # channel -> a wait learned here, until it ends
        self._looked: dict[str, float] = {}  # channel -> when its pause was last looked at

    def known(self, channel: str, now: float) -> Wait | None:
        wait = self._known.get(channel)
        return wait if wait is not None and wait.until > now else None

    async def admit(self, row: Delivery, channel: Channel, now: float) -> Wait | None:
        """None: send now (a unit of each quota window taken). Else the wait: the account is
        paused, or one of its windows is full until its end. A wait of a few seconds (a
        per-second window) is waited here, holding the lane: putting the row back in the
        ledger would cost more than it frees, and every row claimed meanwhile would go back
        too, once per second. Raises StoreError."""
        account = account_of(channel)
        if account is None:
            return None
        wait = await self._admit(row, account, now)
        while wait is not None and wait.until - now <= QUOTA_SLEEP_SECONDS:
            await asyncio.sleep(max(0.0, wait.until - now))
            now = self.clock()
            wait = await self._admit(row, account, now)
        return wait

    async def _admit(self, row: Delivery, account: SmtpSettings, now: float) -> Wait | None:
        name = row.channel
        wait = self.known(name, now)
        if wait is not None:
            return wait
        rates = parse_limits(account.limits)
        got: Pause | Window | None
        if rates:
            got = await self.limits.take(name, windows(rates, now, self.tz), now=now)
        else:
            if now - self._looked.get(name, -math.inf) < self.recheck:
                return None
            self._looked[name] = now
            got = await self.limits.pause_of(name, now=now)
        if got is None:
            return None
        if isinstance(got, Pause):
            wait = Wait(got.until, f"账号暂停 account paused: {got.reason}")
        else:
            wait = Wait(got.end, f"等待配额 waiting for quota {got.label}")
        self._known[name] = wait
        return wait

    async def throttled(
        self, row: Delivery, channel: Channel, error: TransportError, now: float
    ) -> Wait | None:
        """If `error` is a throttle reply from a mail account: pause the account (shared by
        every instance) and return the row's wait; None otherwise. Raises StoreError."""
        account = account_of(channel)
        if account is None or not is_throttle(error):
            return None
        name = row.channel
        last = await self.limits.last_pause(name)
        fresh = last is None or now - last.until > account.pause_max_seconds
        level = 1 if fresh or last is None else last.level + 1
        if is_daily(error):
            until = next_midnight(now, self.tz)
        else:
            delay = min(account.pause_seconds * 2 ** (level - 1), account.pause_max_seconds)
            until = now + delay
        reason = error.message[:200]
        pause = await self.limits.pause(name, Pause(until, level, reason), now=now)
        wait = Wait(pause.until, f"账号暂停 account paused: {pause.reason}")
        self._known[name] = wait
        return wait

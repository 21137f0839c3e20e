"""What the chat robots and the outbound webhook share: one aiohttp session, a pace, a verdict.

Each platform answers HTTP 200 to most failures and puts its verdict in the body, so a
subclass reads the body (`judge`) and a send succeeds only when the platform says so. Every
error text is masked: a robot's URL holds its key, and WeCom echoes the caller's IP.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiolimiter import AsyncLimiter
from pydantic import SecretStr
from yarl import URL

from notifier.channels.base import TransportError
from notifier.channels.status import ChannelStatus, StatusHook, masked_url
from notifier.ledger.models import Delivery
from notifier.masking import Masker
from notifier.schedule.model import ChannelSpec

log = logging.getLogger(__name__)

# Bytes of an answer read at most: the platforms answer with a few hundred.
MAX_ANSWER_BYTES = 64 * 1024
# Pacing margin over a platform's rate: a send landing a hair early would be its 21st in a
# minute. 2% of WeCom's 3 s spacing is 60 ms.
PACE_MARGIN = 1.02
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 2
# A throttle answer without a stated penalty: wait this long before the next try.
DEFAULT_PENALTY = 60.0
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A platform's answer: None error = accepted; `config` = the operator must act."""

    error: TransportError | None
    config: bool = False
    resign: bool = False  # a signature or timestamp complaint: sign afresh and try once more


def pacer(per_minute: float | None, per_second: float | None) -> AsyncLimiter | None:
    """A bucket of one token: sends spaced evenly, never a burst a window-counter would reject.

    20/min gives one send every 3.06 s; 5/s with 100/min one every 0.61 s (both limits hold
    in any window). None or 0 for both: no limit.
    """
    gaps = [60.0 / per_minute if per_minute else 0.0, 1.0 / per_second if per_second else 0.0]
    gap = max(gaps) * PACE_MARGIN
    return AsyncLimiter(1, gap) if gap > 0 else None


def _sensitive(url: str, secret: str | None) -> list[str]:
    parts = urlsplit(url)
    found = [url, *(v for _, v in parse_qsl(parts.query) if len(v) >= 6)]
    found += [seg for seg in parts.path.split("/") if len(seg) >= 16]
    if secret:
        found.append(secret)
    return sorted({s for s in found if s}, key=len, reverse=True)


class HttpChannel:
    """A channel that POSTs one JSON body per row; subclasses sign and judge."""

    type = "http"
    default_per_minute: float | None = None
    default_per_second: float | None = None
    default_penalty = DEFAULT_PENALTY

    def __init__(
        self,
        spec: ChannelSpec,
        *,
        url: SecretStr,
        secret: SecretStr | None,
        session: Callable[[], aiohttp.ClientSession],
        status: ChannelStatus,
        on_status: StatusHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.name = spec.id
        self._url = url
        self._secret = secret
        self._session = session
        self.status = status
        self._on_status = on_status
        self.clock = clock
        self.description = f"{self.type} {spec.id} ({masked_url(url.get_secret_value())})"
        self.send_timeout = spec.timeout or DEFAULT_TIMEOUT
        self.penalty = spec.penalty or self.default_penalty
        per_minute = spec.per_minute if spec.per_minute is not None else self.default_per_minute
        per_second = spec.per_second if spec.per_second is not None else self.default_per_second
        self.limiter = pacer(per_minute, per_second)
        self._slots = asyncio.Semaphore(spec.concurrency or DEFAULT_CONCURRENCY)
        self._throttled_until = 0.0
        #: What this channel's error texts must never show: the App masks them everywhere.
        self.sensitive = _sensitive(
            url.get_secret_value(), secret.get_secret_value() if secret else None
        )
        self._masker = Masker(self.sensitive)

    def same(self, spec: ChannelSpec, url: SecretStr, secret: SecretStr | None) -> bool:
        """True if this channel was made from this spec and these variables."""
        mine = self._secret.get_secret_value() if self._secret else None
        theirs = secret.get_secret_value() if secret else None
        return (
            self.spec == spec
            and self._url.get_secret_value() == url.get_secret_value()
            and mine == theirs
        )

    # --- for subclasses ---

    def request(self, body: str, key: str) -> tuple[URL, str, Mapping[str, str]]:
        """The URL, body and headers of one attempt (signed afresh each time)."""
        return URL(self._url.get_secret_value()), body, {"Content-Type": "application/json"}

    def judge(self, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        raise NotImplementedError

    # --- the contract ---

    def mask(self, text: str) -> str:
        # In any case: a platform may echo the key upper-cased.
        return _IPV4.sub("*.*.*.*", self._masker(text))

    def throttled(self, code: str, message: str) -> Verdict:
        """The platform's rate limit: no send to this channel before its penalty ends."""
        return Verdict(
            TransportError(f"throttled: {code} {message}", code=code, retry_after=self.penalty)
        )

    async def _post(self, body: str, key: str) -> tuple[int, Mapping[str, str], bytes]:
        url, data, headers = self.request(body, key)
        timeout = aiohttp.ClientTimeout(total=self.send_timeout)
        async with self._session().post(
            url, data=data.encode("utf-8"), headers=headers, timeout=timeout, allow_redirects=False
        ) as resp:
            return resp.status, dict(resp.headers), await resp.content.read(MAX_ANSWER_BYTES)

    async def send(self, delivery: Delivery) -> None:
        """Post the row's stored body; return only on the platform's explicit success."""
        if self.status.disabled:
            raise TransportError(f"channel disabled: {self.status.config_error}", permanent=True)
        wait = self._throttled_until - self.clock()
        if wait > 0:
            raise TransportError("throttled: penalty running", code="penalty", retry_after=wait)
        async with self._slots:
            verdict = await self._attempt(delivery.message, delivery.key)
            if verdict.resign and verdict.error is not None:
                # A fresh timestamp and signature, once.
                verdict = await self._attempt(delivery.message, delivery.key)
        if verdict.error is not None and verdict.error.retry_after is not None:
            until = self.clock() + verdict.error.retry_after
            self._throttled_until = max(self._throttled_until, until)
        if verdict.error is None:
            if self.status.config_error is not None and not self.status.disabled:
                await self._set_problem(None)
            return
        if verdict.config:
            await self._set_problem(verdict.error.message)
        raise verdict.error

    async def _attempt(self, body: str, key: str) -> Verdict:
        try:
            status, headers, answer = await self._post(body, key)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = self.mask(str(exc))[:200]
            return Verdict(TransportError(f"network: {type(exc).__name__}: {detail}"))
        verdict = self.judge(status, headers, answer)
        if verdict.error is not None:
            verdict.error.message = self.mask(verdict.error.message)
            verdict.error.args = (verdict.error.message,)
        return verdict

    async def _set_problem(self, problem: str | None) -> None:
        self.status.config_error = problem
        log.log(
            logging.ERROR if problem else logging.INFO,
            "channel configuration error" if problem else "channel answers again",
            extra={"action": "channel_problem" if problem else "channel_ok", "channel": self.name}
            | ({"error": problem} if problem else {}),
        )
        if self._on_status is not None:
            try:
                await self._on_status(self.name, problem)
            except Exception as exc:  # the status is kept in memory; persisting is a bonus
                log.warning(
                    "channel status not saved",
                    extra={"action": "channel_status_unsaved", "error": type(exc).__name__},
                )

    async def close(self) -> None:
        return None


def json_answer(body: bytes) -> dict[str, object] | None:
    import json

    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def errcode_answer(
    status: int, headers: Mapping[str, str], body: bytes, name: str
) -> Verdict | tuple[int, str]:
    """WeCom's and DingTalk's answer: (errcode, errmsg), or the verdict when HTTP or a body
    without an errcode already decides (the message cut to 200 characters)."""
    early = http_verdict(status, headers, name)
    if early is not None:
        return early
    data = json_answer(body)
    if data is None or not isinstance(data.get("errcode"), int):
        return Verdict(TransportError(f"{name}: an answer without errcode"))
    return int(data["errcode"]), str(data.get("errmsg", ""))[:200]  # type: ignore[call-overload]


def http_verdict(status: int, headers: Mapping[str, str], name: str) -> Verdict | None:
    """The HTTP-level part of a verdict, shared by the robots: None if the body decides."""
    if status == 429:
        raw = headers.get("Retry-After", "")
        after = float(raw) if raw.isdigit() else DEFAULT_PENALTY
        return Verdict(TransportError("throttled: HTTP 429", code="429", retry_after=after))
    if status >= 500 or status == 408:
        return Verdict(TransportError(f"{name}: HTTP {status}", code=str(status)))
    if status in (401, 403, 404):
        return Verdict(
            TransportError(f"{name}: HTTP {status}", permanent=True, code=str(status)), config=True
        )
    if status != 200:
        return Verdict(TransportError(f"{name}: HTTP {status}", permanent=True, code=str(status)))
    return None

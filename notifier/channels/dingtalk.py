"""DingTalk (钉钉) custom robot: `POST .../robot/send?access_token=T&timestamp=MS&sign=S`.

Signing (加签): HMAC-SHA256 keyed by the `SEC...` secret over ``"{ms}\\n{secret}"``, base64,
URL-encoded once, as query parameters. 310000 covers a bad signature or timestamp, a missing
keyword and an IP outside the allow list: one fresh signature is tried before giving up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import quote_plus

from yarl import URL

from notifier.channels.base import TransportError
from notifier.channels.http import HttpChannel, Verdict, errcode_answer

THROTTLED = 130101  # more than 20 a minute; about 10 minutes of throttling follow
BUSY = -1
SIGN_OR_KEYWORD = 310000
CONFIG = frozenset({SIGN_OR_KEYWORD, 300005, 300001})  # 300005: token does not exist
TOO_LONG = frozenset({460101})
PENALTY = 600.0


def sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` parameter, already URL-encoded (once)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    mac = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(mac).decode("ascii"))


class DingTalkChannel(HttpChannel):
    type = "dingtalk"
    default_per_minute = 20.0
    default_penalty = PENALTY

    def request(self, body: str, key: str) -> tuple[URL, str, Mapping[str, str]]:
        url = self._url.get_secret_value()
        if self._secret is not None:
            ms = int(time.time() * 1000)
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}timestamp={ms}&sign={sign(self._secret.get_secret_value(), ms)}"
        # encoded=True: the sign is encoded once, here; aiohttp must not encode it again.
        return URL(url, encoded=True), body, {"Content-Type": "application/json"}

    def judge(self, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        answer = errcode_answer(status, headers, body, "dingtalk")
        if isinstance(answer, Verdict):
            return answer
        code, msg = answer
        if code == 0:
            return Verdict(None)
        if code == THROTTLED:
            return self.throttled(str(code), msg)
        if code in CONFIG:
            error = TransportError(f"{code} {msg}", permanent=True, code=str(code))
            return Verdict(error, config=True, resign=code == SIGN_OR_KEYWORD)
        if code in TOO_LONG:
            return Verdict(TransportError(f"{code} {msg}", permanent=True, code=str(code)))
        return Verdict(TransportError(f"{code} {msg}", code=str(code)))

"""Feishu/Lark (飞书) custom bot: `POST .../open-apis/bot/v2/hook/TOKEN`, verdict in `code`.

Signing: seconds timestamp; HMAC-SHA256 keyed by ``"{ts}\\n{secret}"`` over an empty message,
base64; `timestamp` and `sign` go in the JSON body, put in front of the stored body's fields
so the stored bytes are posted unchanged after them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping

from yarl import URL

from notifier.channels.base import TransportError
from notifier.channels.http import HttpChannel, Verdict, http_verdict, json_answer

THROTTLED = 11232
SIGNATURE = 19021  # signature or timestamp
# 19001: the token is not a hook (a wrong or deleted bot); 19022: IP not allowed;
# 19024: keyword missing; 9499: bad request or too large.
CONFIG = frozenset({19001, SIGNATURE, 19022, 19024, 9499})


def sign(secret: str, timestamp: int) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def signed_body(body: str, secret: str, timestamp: int) -> str:
    """The stored JSON object with `timestamp` and `sign` first."""
    head = json.dumps({"timestamp": str(timestamp), "sign": sign(secret, timestamp)})
    return head[:-1] + "," + body[1:] if body.startswith("{") and body != "{}" else head


class FeishuChannel(HttpChannel):
    type = "feishu"
    default_per_minute = 100.0
    default_per_second = 5.0

    def request(self, body: str, key: str) -> tuple[URL, str, Mapping[str, str]]:
        if self._secret is not None:
            body = signed_body(body, self._secret.get_secret_value(), int(time.time()))
        return URL(self._url.get_secret_value()), body, {"Content-Type": "application/json"}

    def judge(self, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        early = http_verdict(status, headers, "feishu")
        if early is not None:
            return early
        data = json_answer(body)
        if data is None:
            return Verdict(TransportError("feishu: an answer that is not JSON"))
        raw = data.get("code", data.get("StatusCode"))
        if not isinstance(raw, int):
            return Verdict(TransportError("feishu: an answer without code"))
        code, msg = raw, str(data.get("msg", data.get("StatusMessage", "")))[:200]
        if code == 0:
            return Verdict(None)
        if code == THROTTLED:
            return self.throttled(str(code), msg)
        if code in CONFIG:
            error = TransportError(f"{code} {msg}", permanent=True, code=str(code))
            return Verdict(error, config=True, resign=code == SIGNATURE)
        return Verdict(TransportError(f"{code} {msg}", code=str(code)))

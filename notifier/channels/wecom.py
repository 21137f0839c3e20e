"""WeCom (企业微信) group robot: `POST .../cgi-bin/webhook/send?key=KEY`, verdict in errcode."""

from __future__ import annotations

from collections.abc import Mapping

from notifier.channels.base import TransportError
from notifier.channels.http import HttpChannel, Verdict, errcode_answer

THROTTLED = 45009  # frequency limit: back off, retry
BUSY = -1  # system busy: retry
CONFIG = frozenset({93000})  # invalid webhook URL: a bad key, or the robot was removed
# The request itself is wrong (type, length, empty): sending it again cannot help.
BAD_REQUEST = frozenset({40008, 40058, 44004})


class WeComChannel(HttpChannel):
    type = "wecom"
    default_per_minute = 20.0

    def judge(self, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        answer = errcode_answer(status, headers, body, "wecom")
        if isinstance(answer, Verdict):
            return answer
        code, msg = answer
        if code == 0:
            return Verdict(None)
        if code == THROTTLED:
            return self.throttled(str(code), msg)
        if code in CONFIG:
            return Verdict(TransportError(f"{code} {msg}", permanent=True, code=str(code)), True)
        if code in BAD_REQUEST:
            return Verdict(TransportError(f"{code} {msg}", permanent=True, code=str(code)))
        return Verdict(TransportError(f"{code} {msg}", code=str(code)))

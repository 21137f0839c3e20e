"""Outbound webhook: a JSON event POSTed with Standard Webhooks headers.

`webhook-id` is the delivery key, the same on every retry, so a receiver can deduplicate.
2xx is success; 410 Gone means the receiver is gone for good: the channel is disabled and
`/readyz` says so until `notifier channels test ID` succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from yarl import URL

from notifier.channels.base import TransportError
from notifier.channels.http import DEFAULT_PENALTY, HttpChannel, Verdict
from notifier.signing import sign


class WebhookChannel(HttpChannel):
    type = "webhook"

    def request(self, body: str, key: str) -> tuple[URL, str, Mapping[str, str]]:
        assert self._secret is not None, "checked by the schedule loader"
        msg_id, ts = key, int(time.time())
        data = body.encode("utf-8")
        return (
            URL(self._url.get_secret_value()),
            body,
            {
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": sign(self._secret.get_secret_value(), msg_id, ts, data),
            },
        )

    def judge(self, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        if 200 <= status < 300:
            return Verdict(None)
        if status == 410:
            self.status.disabled = True
            msg = "410 Gone: the receiver asked not to be called again (channel disabled)"
            return Verdict(TransportError(msg, permanent=True, code="410"), config=True)
        if status == 429:
            raw = headers.get("Retry-After", "")
            after = float(raw) if raw.isdigit() else DEFAULT_PENALTY
            return Verdict(TransportError("throttled: HTTP 429", code="429", retry_after=after))
        if status >= 500 or status == 408:
            return Verdict(TransportError(f"webhook: HTTP {status}", code=str(status)))
        return Verdict(TransportError(f"webhook: HTTP {status}", permanent=True, code=str(status)))

"""Standard Webhooks signatures (standardwebhooks.com), as pure functions.

Signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``, HMAC-SHA256 keyed with the
base64-decoded part of a ``whsec_...`` secret; the ``webhook-signature`` header holds one or more
space-separated ``v1,<base64>`` entries so that a sender can rotate keys. A receiver may also
hold several secrets at once (its own rotation): the hook's variable may list them separated by
spaces. Time is a parameter: `verify` never reads the clock.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Mapping, Sequence

from notifier.constants import WEBHOOK_TOLERANCE_SECONDS
from notifier.errors import NotifierError

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# A webhook-id becomes part of ledger keys: bound it so a sender cannot bloat them.
MAX_WEBHOOK_ID = 200
# Signatures a header may carry: rotation needs two or three, not hundreds of HMACs per request.
MAX_SIGNATURES = 8


class SignatureError(NotifierError):
    """A webhook request is not authentic; `reason` says why (safe to show the sender)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (raw bytes are taken as the key itself)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret.strip()
        text = text.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("a webhook secret must be whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def secret_keys(value: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """Keys from one secret, a space-separated list of secrets, or a sequence of them."""
    if isinstance(value, bytes):
        return [secret_key(value)]
    if isinstance(value, str):
        return list(_keys_of(value))
    return [secret_key(item) for item in value]


@functools.lru_cache(maxsize=64)
def _keys_of(value: str) -> tuple[bytes, ...]:
    # A hook's secret arrives as the same string on every request: decode it once.
    return tuple(secret_key(item) for item in value.split())


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.digest(key, signed, "sha256")


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message."""
    mac = _mac(secret_key(secret), msg_id, int(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode('ascii')}"


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        for key, item in headers.items():
            if key.lower() == name:
                return item
        return ""
    return value


def verify(
    secrets: str | bytes | Sequence[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = WEBHOOK_TOLERANCE_SECONDS,
) -> str:
    """Check a request's signature; return its webhook-id.

    Raises SignatureError: a header missing or malformed, a timestamp further than `tolerance`
    seconds from `now`, or no ``v1`` signature that matches any of the secrets.
    """
    msg_id = _header(headers, "webhook-id").strip()
    stamp = _header(headers, "webhook-timestamp").strip()
    signature = _header(headers, "webhook-signature").strip()
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", signature),
        )
        if not value
    ]
    if missing:
        raise SignatureError(f"missing header: {', '.join(missing)}")
    if len(msg_id) > MAX_WEBHOOK_ID or not msg_id.isprintable():
        raise SignatureError(f"webhook-id must be 1..{MAX_WEBHOOK_ID} printable characters")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise SignatureError("webhook-timestamp must be integer unix seconds")
    timestamp = int(stamp)
    if timestamp < now - tolerance:
        raise SignatureError("webhook-timestamp too old")
    if timestamp > now + tolerance:
        raise SignatureError("webhook-timestamp too new")
    offered: list[bytes] = []
    for entry in signature.split()[:MAX_SIGNATURES]:
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION or not encoded:
            continue
        try:
            offered.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not offered:
        raise SignatureError("webhook-signature has no v1 signature")
    for key in secret_keys(secrets):
        expected = _mac(key, msg_id, timestamp, body)
        # compare_digest: the time taken does not reveal how much of a signature matched.
        if any(hmac.compare_digest(expected, sig) for sig in offered):
            return msg_id
    raise SignatureError("no matching signature")

"""Opaque, stateless unsubscribe tokens: the address sealed with AES-SIV (`cryptography`).

A link must not carry the address in clear (it ends up in proxy logs, link scanners and
forwarded mail), yet any instance must verify it without a database lookup. AES-SIV gives
both: authenticated encryption under a key derived from NOTIFIER_UNSUBSCRIBE_SECRET, and
deterministic (RFC 5297), so one address always gets the same token and a message rendered
twice is the same message. Equal tokens reveal equal addresses, nothing more.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from notifier.config import Settings
from notifier.private_files import create_private, private_dir, warn_if_open

# Bound to this purpose: the same secret keyed for anything else yields unrelated keys.
_KEY_LABEL = b"notifier unsubscribe token v2"
_ASSOCIATED = [b"notifier-unsubscribe"]


@functools.lru_cache(maxsize=8)
def _cipher(secret: bytes) -> AESSIV:
    # 64 bytes: AES-256-SIV. HMAC as the KDF: the secret is already high-entropy.
    return AESSIV(hmac.digest(secret, _KEY_LABEL, hashlib.sha512))


def seal_address(secret: bytes, address: str) -> str:
    """The token of an address (lower-cased): URL-safe base64 without padding."""
    sealed = _cipher(secret).encrypt(address.lower().encode("utf-8"), _ASSOCIATED)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def open_address(secret: bytes, token: str) -> str | None:
    """The address a token was sealed for, or None if it was not made with this secret."""
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return _cipher(secret).decrypt(sealed, _ASSOCIATED).decode("utf-8")
    except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
        return None


def unsubscribe_token(secret: bytes, email: str) -> str:
    """An opaque token for the address (AES-SIV, above): stateless, so any
    instance can verify it, and the address is not readable in the link."""
    return seal_address(secret, email)


def _legacy_unsubscribe_token(secret: bytes, addr: str) -> str:
    """`<email>.<mac>`, as links sent before opaque tokens carried it."""
    mac = hmac.new(secret, addr.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
    return f"{addr}.{mac}"


def verify_unsubscribe_token(secret: bytes, token: str) -> str | None:
    """The address a token was made for, or None if it is not ours.

    Links already sent in the older `<email>.<mac>` form keep working: they are in people's
    mailboxes, and unsubscribing must not break because the service was upgraded.
    """
    if "@" not in token:
        return open_address(secret, token)
    addr, _, mac = token.rpartition(".")
    if not addr or not mac:
        return None
    return addr if hmac.compare_digest(_legacy_unsubscribe_token(secret, addr), token) else None


def unsubscribe_key(settings: Settings) -> bytes:
    """The key of unsubscribe tokens: the setting, or a key file kept beside the mail drop."""
    if settings.unsubscribe_secret is not None:
        return settings.unsubscribe_secret.get_secret_value().encode()
    path = Path("var") / "unsubscribe.key"
    # 0600 in a 0700 directory: whoever reads the key can unsubscribe any address.
    private_dir(path.parent)
    if path.exists() or not create_private(path, secrets.token_hex(32).encode("ascii")):
        warn_if_open(path, "the unsubscribe key")
    return hashlib.sha256(path.read_text().strip().encode()).digest()

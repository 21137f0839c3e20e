"""Attachments stored once by hash, spliced into a row's message at send time.

A row's stored message is the whole MIME message except each attachment part's body, which
is one line `MARK<sha256 hex>`: bodies are base64 (compose/message.py), so no body line can
look like it. `splice` puts the base64 of the content there. The message is ASCII; so is
the marker; the content the marker names is in the `attachments` table (migration 0015).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

# Not a base64 line (it holds '@' and ':'), and no header starts with it.
MARK = "@@notifier-attachment:sha256:"
_MARKED = re.compile(re.escape(MARK) + r"([0-9a-f]{64})")


def marker(digest: str) -> str:
    return MARK + digest


def digests(message: str) -> list[str]:
    """The attachments a stored message names, in order (empty for most rows)."""
    if MARK not in message:
        return []
    return _MARKED.findall(message)


def encoded(content: bytes) -> str:
    """Base64 in lines of 76 characters, CRLF-separated (RFC 2045 6.8)."""
    return base64.encodebytes(content).decode("ascii").rstrip("\n").replace("\n", "\r\n")


def splice(message: str, bodies: Mapping[str, str]) -> str:
    """`message` with each marker replaced by its attachment's base64 body (`encoded`);
    KeyError names a digest that `bodies` lacks."""
    return _MARKED.sub(lambda m: bodies[m.group(1)], message)


# Encoded bodies kept in memory by the worker's store: a campaign sends one file thousands
# of times; reading 2 MB from the database and encoding it for each would cost more than
# the send. Bounded so that a few large files never hold more than this.
CACHE_CHARS = 64 * 1024 * 1024


class AttachmentCache:
    """Least recently used encoded bodies, at most CACHE_CHARS characters in all."""

    def __init__(self, limit: int = CACHE_CHARS) -> None:
        self.limit = limit
        self._bodies: dict[str, str] = {}
        self._chars = 0

    def get(self, digest: str) -> str | None:
        body = self._bodies.pop(digest, None)
        if body is not None:
            self._bodies[digest] = body  # most recent last
        return body

    def put(self, digest: str, body: str) -> None:
        if digest in self._bodies or len(body) > self.limit:
            return
        self._bodies[digest] = body
        self._chars += len(body)
        while self._chars > self.limit:
            oldest = next(iter(self._bodies))
            self._chars -= len(self._bodies.pop(oldest))

"""What an operator sees of a chat channel: its configuration verdict and its masked address.

Apart from `http.py` so that the registry, `check` and the CLI can say it without loading
aiohttp's client (about 0.2 s of imports) where no robot is configured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class ChannelStatus:
    """The last answer that matters to an operator: a configuration error, or a disable."""

    config_error: str | None = None
    disabled: bool = False


# Called with (channel id, problem or None) when a channel's configuration verdict changes.
StatusHook = Callable[[str, str | None], Awaitable[None]]


def masked_url(url: str) -> str:
    """The scheme and host only: path and query hold the robot's key or token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"

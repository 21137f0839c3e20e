"""Ways a message leaves: each channel implements `Channel.send` and raises `TransportError`."""

from __future__ import annotations

from notifier.channels.base import Channel, TransportError

__all__ = ["Channel", "TransportError"]

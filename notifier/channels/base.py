"""The channel contract: one Protocol every channel meets, one error type (after healthchecks'
`Transport`, whose caller decides retry or give-up from `permanent`)."""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from notifier.errors import NotifierError
from notifier.ledger.models import Delivery


class TransportError(NotifierError):
    """A send failed. `permanent` tells the worker not to retry (an SMTP 5xx, say).

    `code` is the platform's own error code, if it gave one (a robot's errcode, an HTTP
    status, an SMTP reply code); `retry_after` is the platform's penalty in seconds: no retry
    before it; `bounce` says the address itself was refused for good.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        code: str | None = None,
        retry_after: float | None = None,
        bounce: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        # The server refused the recipient's address for good (an SMTP 5xx for it): the row
        # ends `bounced` and the address is suppressed.
        self.bounce = bounce
        self.permanent = permanent
        self.code = code
        self.retry_after = retry_after


class NotSent(NotifierError):
    """A held send gave up before its last step (its `ready` came too late): the server has
    not taken the message, so sending it again is neither a duplicate nor a new attempt."""


class Channel(Protocol):
    name: str
    description: str
    #: The longest one `send` may take; a claim's lease must outlast it.
    send_timeout: float

    async def send(self, delivery: Delivery) -> None:
        """Transmit the stored message once. Raises TransportError; returns on acceptance."""

    async def close(self) -> None:
        """Release connections; the channel may not be used afterwards."""


@runtime_checkable
class HeldChannel(Channel, Protocol):
    """A channel whose send has a last step that makes a message the server's (SMTP's final
    dot), which can wait: the worker overlaps its last outcome's commit with the transfer."""

    async def send_held(
        self, delivery: Delivery, ready: asyncio.Future[None] | None, hold: float
    ) -> None:
        """`send`, with the last step after `ready` is done; if it is not done within `hold`
        seconds, raise `smtp_wire.NotSent` (nothing was sent)."""

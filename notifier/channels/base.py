"""The channel contract: one Protocol every channel meets, one error type (after healthchecks'
`Transport`, whose caller decides retry or give-up from `permanent`)."""

from __future__ import annotations

from typing import Protocol

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


class Channel(Protocol):
    name: str
    description: str
    #: The longest one `send` may take; a claim's lease must outlast it.
    send_timeout: float

    async def send(self, delivery: Delivery) -> None:
        """Transmit the stored message once. Raises TransportError; returns on acceptance."""

    async def close(self) -> None:
        """Release connections; the channel may not be used afterwards."""

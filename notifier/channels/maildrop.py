"""The embedded default: one file per message in a Maildir (`var/mail/new`), no server needed."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from notifier.channels.base import TransportError
from notifier.ledger.models import Delivery


class MailDropChannel:
    name = "email"
    # A local file write; generous for a slow disk.
    send_timeout = 5.0

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"local mail drop (Maildir) at {directory}"
        for sub in ("tmp", "new", "cur"):
            (directory / sub).mkdir(parents=True, exist_ok=True)

    def _write(self, delivery: Delivery) -> None:
        # Maildir protocol: write under tmp/, then rename into new/ (atomic on one filesystem).
        name = f"{time.time():.6f}.{delivery.id}_{os.getpid()}.notifier.eml"
        tmp = self.directory / "tmp" / name
        data = delivery.message.replace("\r\n", "\n").encode("ascii", "surrogateescape")
        with tmp.open("wb") as handle:
            handle.write(data)
        tmp.rename(self.directory / "new" / name)

    async def send(self, delivery: Delivery) -> None:
        try:
            await asyncio.to_thread(self._write, delivery)
        except OSError as exc:
            raise TransportError(f"mail drop write failed: {exc}") from exc

    async def close(self) -> None:
        return None

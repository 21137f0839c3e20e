"""The embedded default: one file per message in a Maildir (`var/mail/new`), no server needed."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from notifier.channels.base import TransportError
from notifier.ledger.models import Delivery
from notifier.private_files import PRIVATE_FILE, private_dir, warn_if_open


class MailDropChannel:
    name = "email"
    # A local file write; generous for a slow disk.
    send_timeout = 5.0

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"local mail drop (Maildir) at {directory}"
        # The messages are the mail itself: 0700 directories, 0600 files (private_files).
        warn_if_open(directory, "the mail drop")
        for sub in ("tmp", "new", "cur"):
            private_dir(directory / sub)

    def _write(self, delivery: Delivery) -> None:
        # Maildir protocol: write under tmp/, then rename into new/ (atomic on one filesystem).
        name = f"{time.time():.6f}.{delivery.id}_{os.getpid()}.notifier.eml"
        tmp = self.directory / "tmp" / name
        # UTF-8, as an SMTPUTF8 server stores it: a message is ASCII unless its address is
        # internationalised (RFC 6532), and such a message must not fail here for ever.
        data = delivery.message.replace("\r\n", "\n").encode("utf-8", "surrogateescape")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, PRIVATE_FILE)
            handle.write(data)
        tmp.rename(self.directory / "new" / name)

    async def send(self, delivery: Delivery) -> None:
        try:
            await asyncio.to_thread(self._write, delivery)
        except OSError as exc:
            raise TransportError(f"mail drop write failed: {exc}") from exc

    async def close(self) -> None:
        return None

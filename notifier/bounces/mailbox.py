"""The bounce mailbox: poll it over IMAP, learn from each bounce of ours, file it away.

The mailbox is often the sending account's own INBOX, read by people too. So: messages are
fetched with `BODY.PEEK` (no \\Seen flag set), and only a bounce that returns one of our own
messages (matched in the ledger) is moved to the processed folder. Anything else, a human's
mail, an auto-reply, a bounce of mail someone sent by hand, is never touched or deleted.

A hard bounce suppresses the address and ends the row `bounced`; a soft one is noted on the
row. The UIDs already looked at are remembered (with the folder's UIDVALIDITY) in the ledger's
meta table, so that a poll reads only new mail. stdlib `imaplib` runs in a worker thread: a
poll every few minutes needs no asyncio client.
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import ipaddress
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from notifier.bounces.parse import Kind, Verdict, read
from notifier.config import BounceSettings
from notifier.errors import StoreError
from notifier.ledger.suppressions import BounceLedger, SuppressionStore

log = logging.getLogger(__name__)

# Messages read per poll: a first poll of a years-old INBOX must not read it all at once.
MAX_PER_POLL = 200
# Of each message, the bytes fetched: a report and the returned headers are at its top; an
# attachment of the original can be megabytes.
FETCH_BYTES = 256 * 1024
IMAP_TIMEOUT = 30.0  # seconds per socket operation
SEEN_META = "bounces_seen:"  # + account: "<uidvalidity>:<last uid looked at>"

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_UID = re.compile(rb"UID (\d+)")


@dataclass
class Tally:
    """What one poll did."""

    read: int = 0  # messages looked at
    matched: int = 0  # bounces of our messages (moved to the processed folder)
    suppressed: int = 0  # of those, hard: the address is now suppressed
    soft: int = 0  # of those, soft: noted on the row
    left: int = 0  # not a bounce of ours (human mail, auto-replies, others' bounces): untouched


class MailboxError(Exception):
    """The mailbox could not be read (connection, login, folder)."""


class BounceReader:
    def __init__(
        self,
        settings: BounceSettings,
        *,
        account: str,
        ledger: BounceLedger,
        suppressions: SuppressionStore,
        get_meta: Callable[[str], Awaitable[str | None]],
        set_meta: Callable[[str, str], Awaitable[None]],
        clock: Callable[[], float],
    ) -> None:
        assert settings.imap_url is not None
        self.settings = settings
        self.account = account  # "email", or a mail channel's id
        self.ledger = ledger
        self.suppressions = suppressions
        self._get_meta, self._set_meta = get_meta, set_meta
        self.clock = clock
        url = urlsplit(settings.imap_url)
        self.tls = url.scheme == "imaps"
        self.host = url.hostname or ""
        self.port = url.port or (993 if self.tls else 143)
        self.user = unquote(url.username or "")
        self.folder = settings.folder
        self.error: str | None = None  # the last poll's problem, None once one works

    # --- the IMAP side (in a thread) ---

    def _connect(self) -> imaplib.IMAP4:
        if self.tls:
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                self.host, self.port, ssl_context=ssl.create_default_context(),
                timeout=IMAP_TIMEOUT,
            )  # fmt: skip
        else:
            imap = imaplib.IMAP4(self.host, self.port, timeout=IMAP_TIMEOUT)
            if "STARTTLS" in imap.capabilities:
                imap.starttls(ssl.create_default_context())
            elif not _loopback(self.host):
                imap.shutdown()
                raise MailboxError(
                    f"IMAP {self.host}:{self.port} offers no STARTTLS: refusing to send the "
                    "password in clear (use imaps://)"
                )
        password = self.settings.imap_password
        imap.login(self.user, password.get_secret_value() if password else "")
        return imap

    def _fetch(self, seen: tuple[int, int]) -> tuple[int, list[tuple[int, bytes]]]:
        """(UIDVALIDITY, [(uid, first bytes)]) of the messages after `seen`'s UID."""
        imap = self._connect()
        try:
            typ, _ = imap.select(_quoted(self.folder), readonly=True)
            if typ != "OK":
                raise MailboxError(f"cannot open folder {self.folder!r}")
            _, resp = imap.response("UIDVALIDITY")
            validity = int(resp[0]) if resp and resp[0] else 0
            after = seen[1] if seen[0] == validity else 0
            typ, data = imap.uid("SEARCH", f"UID {after + 1}:*")
            uids = [int(u) for u in (data[0] or b"").split() if int(u) > after][:MAX_PER_POLL]
            out = []
            for uid in uids:
                typ, parts = imap.uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{FETCH_BYTES}>)")
                raw = next((p[1] for p in parts if isinstance(p, tuple)), b"")
                out.append((uid, raw))
            return validity, out
        finally:
            _logout(imap)

    def _move(self, uids: list[int]) -> None:
        """Move our bounces to the processed folder (made on first use)."""
        if not uids:
            return
        imap = self._connect()
        try:
            imap.create(_quoted(self.settings.processed_folder))  # "already exists" is fine
            typ, _ = imap.select(_quoted(self.folder))
            if typ != "OK":
                raise MailboxError(f"cannot open folder {self.folder!r}")
            uidset = ",".join(str(u) for u in uids)
            target = _quoted(self.settings.processed_folder)
            if "MOVE" in imap.capabilities:
                typ, _ = imap.uid("MOVE", uidset, target)
            else:
                typ, _ = imap.uid("COPY", uidset, target)
                if typ == "OK":
                    imap.uid("STORE", uidset, "+FLAGS.SILENT", r"(\Deleted)")
                    imap.uid("EXPUNGE", uidset)  # UIDPLUS: only these, never others
            if typ != "OK":
                raise MailboxError(f"cannot move bounces to {self.settings.processed_folder!r}")
        finally:
            _logout(imap)

    # --- one poll ---

    async def poll(self) -> Tally:
        """Read new mail once; act on our bounces; leave everything else alone."""
        tally = Tally()
        key = SEEN_META + self.account
        seen = _seen(await self._get_meta(key))
        try:
            validity, messages = await asyncio.to_thread(self._fetch, seen)
        except (OSError, imaplib.IMAP4.error, MailboxError, ssl.SSLError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise MailboxError(self.error) from exc
        moves: list[int] = []
        for uid, raw in messages:
            tally.read += 1
            verdict = read(raw)
            if verdict.bounce and await self._learn(verdict, tally):
                moves.append(uid)
            else:
                tally.left += 1
        if moves:
            try:
                await asyncio.to_thread(self._move, moves)
            except (OSError, imaplib.IMAP4.error, MailboxError, ssl.SSLError) as exc:
                # Learned already (suppressing again is harmless); moved at the next poll.
                self.error = f"{type(exc).__name__}: {exc}"
                raise MailboxError(self.error) from exc
        if messages:
            await self._set_meta(key, f"{validity}:{max(uid for uid, _ in messages)}")
        self.error = None
        log.info(
            "bounce mailbox read",
            extra={
                "action": "bounces_read",
                "account": self.account,
                "read": tally.read,
                "matched": tally.matched,
                "suppressed": tally.suppressed,
                "soft": tally.soft,
                "left": tally.left,
            },
        )
        return tally

    async def _learn(self, verdict: Verdict, tally: Tally) -> bool:
        """Act on a bounce; False if it returns none of our messages (then it stays)."""
        row = await self.ledger.returned(verdict.message_ids, verdict.our_ids)
        if row is None:
            return False
        now = self.clock()
        words = " ".join(w for w in (verdict.status, verdict.diagnostic) if w)
        hard = verdict.kind is Kind.HARD
        label = "退信 bounced" if hard else "软退信 soft bounce"
        await self.ledger.mark(row.id, hard=hard, error=f"{label}: {words}"[:500], now=now)
        tally.matched += 1
        if hard:
            await self.suppressions.suppress(
                row.recipient,
                reason=words or "bounced",
                excerpt=verdict.excerpt,
                source="bounce",
                delivery_id=row.id,
                now=now,
            )
            tally.suppressed += 1
        else:
            tally.soft += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every `poll_seconds` until `stop`; a failed poll is logged and tried again."""
        while not stop.is_set():
            try:
                await self.poll()
            except (MailboxError, StoreError) as exc:
                log.warning(
                    "bounce mailbox not read",
                    extra={"action": "bounces_failed", "account": self.account, "error": str(exc)},
                )
            try:
                await asyncio.wait_for(stop.wait(), self.settings.poll_seconds)
            except TimeoutError:
                pass


def _seen(value: str | None) -> tuple[int, int]:
    validity, _, uid = (value or "").partition(":")
    try:
        return int(validity), int(uid)
    except ValueError:
        return 0, 0


def _quoted(folder: str) -> str:
    """A folder name as IMAP wants it: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    name = _mutf7(folder)
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mutf7(name: str) -> str:
    """已处理 -> &XfJSIJZk-: printable ASCII as is (& as &-), the rest as UTF-16 in base64."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            coded = base64.b64encode("".join(run).encode("utf-16-be")).decode("ascii")
            out.append("&" + coded.rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _logout(imap: imaplib.IMAP4) -> None:
    try:
        imap.logout()
    except (OSError, imaplib.IMAP4.error):
        imap.shutdown()

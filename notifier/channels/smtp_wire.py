"""One SMTP session's mail transactions, on the socket aiosmtplib opened.

aiosmtplib connects, says EHLO, upgrades to TLS and logs in; then `Wire.take` takes the
transport over for the transactions, for two things its `sendmail` cannot do:

- **PIPELINING** (RFC 2920) where the server offers it: MAIL, RCPT and DATA go in one write
  and their three replies come back together, so a message costs two round trips, not four.
  (aiosmtplib's protocol keeps one reply at a time and drops data that arrives while a reply
  waits to be read, so it cannot read a pipelined group.)
- **A held final dot.** `transaction(..., ready=...)` sends the envelope and the whole body,
  then waits for `ready` (the lane's last outcome committed to the ledger) before the `.` that
  makes the message the server's. The commit overlaps the transfer, and a kill still leaves
  at most one sent-but-unrecorded message per connection: the next one has no final dot, and
  a server discards a message whose connection closes inside DATA (RFC 5321 4.1.1.4). If
  `ready` is not done within `hold` seconds (the database is slow or away) the connection is
  closed, the message is not sent and `NotSent` says so: send it again once `ready` is done.

Failures raise aiosmtplib's own exceptions (`SMTPSenderRefused`, `SMTPRecipientsRefused`,
`SMTPDataError`, `SMTPServerDisconnected`, `SMTPTimeoutError`), so `email.classify` stays the
one place that decides retry, give up or bounce.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import re
from typing import cast

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from notifier.channels.base import NotSent

# A reply line and a whole reply are bounded like aiosmtplib bounds them.
MAX_REPLY_LINE = 8192
MAX_REPLY = 4 * MAX_REPLY_LINE
# No command may be smuggled into an envelope address: C0 controls (CR, LF) and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def wire_body(message: str) -> tuple[bytes, bool]:
    """The message as DATA carries it: CRLF line ends, leading dots doubled, ending in CRLF,
    without the terminating `.`; and whether it is 8-bit (then BODY=8BITMIME is asked for).

    Plain `bytes.replace` rather than regular expressions: this runs once per message.
    """
    try:
        data = message.encode("ascii")
        eight_bit = False
    except UnicodeEncodeError:
        data = message.encode("utf-8", "surrogateescape")
        eight_bit = True
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    data = data.replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    if b"\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return data, eight_bit


def _address(address: str) -> bytes:
    """An envelope address in ASCII; a CR, LF or other control character is refused (no
    command can be smuggled in), and so is a non-ASCII one (it would need SMTPUTF8).

    A display-name form (`法治处 <fazhi@example.gov.cn>`, as NOTIFIER_MAIL_FROM may be
    written) gives its address, as aiosmtplib's `sendmail` did; a bare address (every
    recipient) skips the parse."""
    if _CONTROL.search(address):  # anywhere in what was given, before any parsing
        raise aiosmtplib.SMTPRecipientRefused(553, "5.1.3 control character in address", address)
    if "<" in address or "(" in address or '"' in address:
        address = email.utils.parseaddr(address)[1] or address.strip()
    try:
        return address.encode("ascii")
    except UnicodeEncodeError:
        raise aiosmtplib.SMTPRecipientRefused(
            553, "5.6.7 non-ASCII address needs SMTPUTF8, which is not used", address
        ) from None


class Wire(asyncio.Protocol):
    """An SMTP session after its greeting, EHLO, TLS and login: transactions only."""

    def __init__(
        self, *, pipelining: bool, size: bool, eight_bit_mime: bool, reply_timeout: float
    ) -> None:
        # Each reply is awaited at most this long (aiosmtplib's per-operation timeout).
        self.reply_timeout = reply_timeout
        self.pipelining = pipelining
        self.size = size
        self.eight_bit_mime = eight_bit_mime
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._replies: collections.deque[SMTPResponse] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: Exception | None = None

    @classmethod
    def take(cls, client: aiosmtplib.SMTP, *, reply_timeout: float) -> Wire:
        """Take over the connected, greeted (and logged-in) `client`'s transport; the client
        object is not used again."""
        protocol = client.protocol
        transport = None if protocol is None else protocol.transport
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        wire = cls(
            pipelining=client.supports_extension("pipelining"),
            size=client.supports_extension("size"),
            eight_bit_mime=client.supports_extension("8bitmime"),
            reply_timeout=reply_timeout,
        )
        wire._transport = cast(asyncio.Transport, transport)
        transport.set_protocol(wire)
        return wire

    # --- asyncio.Protocol ---

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            while self._parse_one():
                pass
        except aiosmtplib.SMTPResponseException as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        error = aiosmtplib.SMTPServerDisconnected("Connection lost")
        if exc is not None:
            error.__cause__ = exc
        self._fail(error)
        self._transport = None

    def _fail(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        self._wake()
        if self._transport is not None:
            self._transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _parse_one(self) -> bool:
        """Move one complete reply from the buffer to `_replies`; False if none is whole."""
        code = -1
        lines: list[bytes] = []
        offset = 0
        while True:
            end = self._buffer.find(b"\n", offset)
            if end == -1:
                if len(self._buffer) - offset > MAX_REPLY_LINE or len(self._buffer) > MAX_REPLY:
                    raise aiosmtplib.SMTPResponseException(-1, "Response too long")
                return False
            line = bytes(self._buffer[offset : end + 1])
            if len(line) > MAX_REPLY_LINE or end + 1 > MAX_REPLY:
                raise aiosmtplib.SMTPResponseException(-1, "Response too long")
            try:
                code = int(line[:3])
            except ValueError:
                text = line.decode("utf-8", "replace").strip()
                raise aiosmtplib.SMTPResponseException(
                    -1, f"Malformed SMTP response line: {text}"
                ) from None
            lines.append(line[4:].strip(b" \t\r\n"))
            offset = end + 1
            if line[3:4] != b"-":
                break
        del self._buffer[:offset]
        text = b"\n".join(lines).decode("utf-8", "surrogateescape")
        self._replies.append(SMTPResponse(code, text))
        self._wake()
        return True

    # --- the session ---

    @property
    def is_connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def reusable(self) -> bool:
        """Connected, and nothing arrived unasked since the last reply (a server's notice
        before it hangs up, say): such a line would be read as the next command's reply."""
        return self.is_connected and not self._replies and not self._buffer

    def close(self) -> None:
        """Drop the connection at once (mid-DATA: the server discards the message)."""
        if self._transport is not None:
            self._transport.close()

    def _write(self, data: bytes) -> None:
        if self._lost is not None or self._transport is None or self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)

    async def _reply(self) -> SMTPResponse:
        while not self._replies:
            if self._lost is not None:
                raise self._lost
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            # One timer per wait, not asyncio.wait_for (twice a message: it showed in profiles).
            timer = loop.call_later(self.reply_timeout, self._expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self._replies.popleft()

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self.close()  # the session is out of step: never reuse it
            waiter.set_exception(
                aiosmtplib.SMTPTimeoutError("Timed out waiting for server response")
            )

    async def command(self, line: bytes) -> SMTPResponse:
        self._write(line + b"\r\n")
        return await self._reply()

    async def rset(self) -> None:
        reply = await self.command(b"RSET")
        if reply.code != 250:
            raise aiosmtplib.SMTPResponseException(reply.code, reply.message)

    async def quit(self) -> None:
        try:
            await self.command(b"QUIT")
        finally:
            self.close()

    async def transaction(
        self,
        sender: str,
        recipient: str,
        message: str,
        *,
        ready: asyncio.Future[None] | None = None,
        hold: float = 0.0,
    ) -> SMTPResponse:
        """Send one message to one recipient; return the server's 250 to the final dot.

        With `ready`, the final dot waits for it, at most `hold` seconds (then `NotSent`).
        After a refusal the session is reset (RSET) and stays usable; after anything else
        it is closed.
        """
        body, eight_bit = wire_body(message)
        mail = b"MAIL FROM:<" + _address(sender) + b">"
        if self.size:
            mail += b" SIZE=" + str(len(body) + 3).encode()
        if eight_bit and self.eight_bit_mime:
            mail += b" BODY=8BITMIME"
        rcpt = b"RCPT TO:<" + _address(recipient) + b">"
        if self.pipelining:
            self._write(mail + b"\r\n" + rcpt + b"\r\nDATA\r\n")
            replies = [await self._reply() for _ in range(3)]
        else:
            replies = [await self.command(mail)]
            if replies[0].code == 250:
                replies.append(await self.command(rcpt))
                if replies[1].code in (250, 251):
                    replies.append(await self.command(b"DATA"))
        await self._refused(sender, recipient, replies)
        if ready is None or ready.done():
            self._write(body + b".\r\n")  # one write: nothing to wait for
        else:
            self._write(body)
            try:
                await asyncio.wait_for(asyncio.shield(ready), hold)
            except TimeoutError:
                self.close()
                raise NotSent(f"the last outcome was not recorded within {hold:g} s") from None
            self._write(b".\r\n")
        reply = await self._reply()
        if reply.code != 250:
            await self._reset()
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply

    async def _refused(self, sender: str, recipient: str, replies: list[SMTPResponse]) -> None:
        """Raise for the first refusal among MAIL, RCPT and DATA's replies (after a reset)."""
        mail = replies[0]
        rcpt = replies[1] if len(replies) > 1 else None
        data = replies[2] if len(replies) > 2 else None
        if mail.code == 250 and rcpt is not None and rcpt.code in (250, 251):
            if data is not None and data.code == 354:
                return
        if data is not None and data.code == 354:
            # A server that opened DATA for a refused envelope: end it empty, then reset.
            self._write(b".\r\n")
            await self._reply()
        await self._reset()
        if mail.code != 250:
            raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, sender)
        assert rcpt is not None
        if rcpt.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)]
            )
        assert data is not None
        raise aiosmtplib.SMTPDataError(data.code, data.message)

    async def _reset(self) -> None:
        """RSET after a refusal, so the session can carry the next message; a session that
        cannot be reset is closed."""
        try:
            await self.rset()
        except (aiosmtplib.SMTPException, OSError):
            self.close()

"""SMTP delivery over a small pool of reused connections.

aiosmtplib opens each (TLS, STARTTLS, login); `smtp_wire.Wire` then carries its transactions,
pipelined where the server allows, the final dot held for the worker's last commit. One
connection sends one message at a time, so concurrency is several connections; reuse roughly
doubles throughput over a connection per message (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import aiosmtplib

from notifier.channels.base import NotSent, TransportError
from notifier.channels.smtp_wire import Wire
from notifier.config import SmtpSettings
from notifier.constants import READY_HOLD_SECONDS
from notifier.ledger.models import Delivery

log = logging.getLogger(__name__)

_START_TLS: dict[str, bool | None] = {"auto": None, "starttls": True, "none": False, "tls": False}


# After DATA, a 5xx is about the one recipient only when it says so: an RFC 3463 status of
# 5.1.x (bad mailbox or domain) or 5.2.1 (disabled), or the words servers use for it.
_BAD_MAILBOX = re.compile(
    r"\b5\.1\.\d\b|\b5\.2\.1\b|user unknown|no such user|unknown user|mailbox not found|"
    r"mailbox unavailable|does not exist|doesn't exist|not exist|invalid recipient|"
    r"用户不存在|收件人不存在|邮箱不存在|地址不存在|帐号不存在|账号不存在|无此用户",
    re.IGNORECASE,
)
# A 5xx on RCPT TO that is about us, not the address: relaying or authentication refused.
_NOT_THE_ADDRESS = re.compile(r"\b5\.7\.\d\b|relay|authenticat|auth required", re.IGNORECASE)


def classify(exc: BaseException) -> TransportError:
    """Map an SMTP failure to retry (4xx, network, timeouts) or give up (5xx); a 5xx for the
    recipient (on RCPT TO, or after DATA when it names the mailbox) is a bounce."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        permanent = bool(codes) and all(c >= 500 for c in codes)
        bounce = permanent and not _NOT_THE_ADDRESS.search(text)
        code = str(codes[0]) if codes else None
        return TransportError(text, permanent=permanent, code=code, bounce=bounce)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {exc.message}"
        permanent = 500 <= exc.code < 600
        bounce = (
            permanent
            and isinstance(exc, aiosmtplib.SMTPDataError)
            and (_BAD_MAILBOX.search(exc.message) is not None)
        )
        return TransportError(text, permanent=permanent, code=str(exc.code), bounce=bounce)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return TransportError(f"timeout: {exc}")
    return TransportError(f"{type(exc).__name__}: {exc}")


class SmtpChannel:
    name = "email"

    def __init__(self, settings: SmtpSettings, *, envelope_from: str, name: str = "email") -> None:
        assert settings.host, "SmtpChannel needs a host; use MailDropChannel otherwise"
        self.name = name  # "email", or a mail channel's id (`channels: {x: {type: smtp}}`)
        self.settings = settings
        self.envelope_from = envelope_from
        self.description = f"SMTP {settings.host}:{settings.port} ({settings.security})"
        self.send_timeout = settings.timeout
        self._idle: asyncio.LifoQueue[Wire] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._closed = False

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        # No credentials here: aiosmtplib would log in right after connecting, before we can
        # see whether the connection is encrypted (`_login` does it, once it has looked).
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.security == "tls",
            # None: upgrade if the server offers STARTTLS (auto); True: insist; False: never.
            start_tls=_START_TLS[s.security],
            cert_bundle=str(s.ca_file) if s.ca_file else None,
            timeout=s.timeout,
        )

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        s = self.settings
        if not s.username:
            return
        encrypted = client.get_transport_info("sslcontext") is not None
        if not encrypted and not s.allow_plain_auth:
            # Not permanent: the rows wait and retry (a server whose STARTTLS is back, or a
            # corrected setting, sends them); the log and last_error say why.
            log.error(
                "SMTP server offers no TLS; password not sent",
                extra={"action": "smtp_plain_auth_refused", "host": s.host, "port": s.port},
            )
            raise TransportError(
                f"SMTP {s.host}:{s.port} offers no STARTTLS: refusing to send the password "
                "in clear (set NOTIFIER_SMTP__SECURITY=starttls or tls, or "
                "NOTIFIER_SMTP__ALLOW_PLAIN_AUTH=true for a trusted relay)"
            )
        password = s.password.get_secret_value() if s.password else ""
        await client.login(s.username, password)

    async def _open(self) -> Wire:
        client = self._client()
        await client.connect()
        try:
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            await self._login(client)
            return Wire.take(client, reply_timeout=self.settings.timeout)
        except BaseException:
            client.close()
            raise

    async def _checkout(self) -> Wire:
        while not self._idle.empty():
            wire = self._idle.get_nowait()
            if wire.reusable:
                return wire
            wire.close()
        return await self._open()

    async def send(self, delivery: Delivery) -> None:
        await self.send_held(delivery, None)

    async def send_held(
        self,
        delivery: Delivery,
        ready: asyncio.Future[None] | None,
        hold: float = READY_HOLD_SECONDS,
    ) -> None:
        """Send `delivery`; with `ready`, its final dot waits for it, at most `hold` seconds
        (then NotSent: the message was not sent)."""
        if self._closed:
            raise TransportError("channel closed")
        async with self._slots:
            wire: Wire | None = None
            try:
                wire = await self._checkout()
                await wire.transaction(
                    self.envelope_from,
                    delivery.recipient,
                    delivery.message,
                    ready=ready,
                    hold=hold,
                )
            except (TransportError, NotSent):
                raise
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                error = classify(exc)
                if wire is not None:
                    # A refusal leaves the session reset and usable (smtp_wire); else not.
                    if error.permanent and wire.is_connected:
                        self._idle.put_nowait(wire)
                    else:
                        wire.close()
                raise error from exc
            except asyncio.CancelledError:
                # Cut by the worker's bound on the whole send: the session is mid-command.
                if wire is not None:
                    wire.close()
                raise
            self._idle.put_nowait(wire)

    async def close(self) -> None:
        self._closed = True
        while not self._idle.empty():
            wire = self._idle.get_nowait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(wire.quit(), timeout=2)
            wire.close()

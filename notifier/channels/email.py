"""SMTP delivery over a small pool of reused aiosmtplib connections.

One `aiosmtplib.SMTP` sends one message at a time, so concurrency is several connections;
reuse roughly doubles throughput over a connection per message (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import aiosmtplib

from notifier.channels.base import TransportError
from notifier.config import SmtpSettings
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
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
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

    async def _checkout(self) -> aiosmtplib.SMTP:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                return client
        client = self._client()
        await client.connect()
        try:
            await self._login(client)
        except BaseException:
            client.close()
            raise
        return client

    async def send(self, delivery: Delivery) -> None:
        if self._closed:
            raise TransportError("channel closed")
        async with self._slots:
            client: aiosmtplib.SMTP | None = None
            try:
                client = await self._checkout()
                await client.sendmail(self.envelope_from, [delivery.recipient], delivery.message)
            except TransportError:
                raise
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                error = classify(exc)
                if client is not None:
                    # A permanent refusal leaves the session usable; anything else may not.
                    if error.permanent and client.is_connected:
                        with contextlib.suppress(Exception):
                            await client.rset()
                        self._idle.put_nowait(client)
                    else:
                        client.close()
                raise error from exc
            except asyncio.CancelledError:
                # Cut by the worker's bound on the whole send: the session is mid-command.
                if client is not None:
                    client.close()
                raise
            self._idle.put_nowait(client)

    async def close(self) -> None:
        self._closed = True
        while not self._idle.empty():
            client = self._idle.get_nowait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), timeout=2)
            client.close()

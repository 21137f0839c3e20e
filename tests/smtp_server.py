"""A real SMTP server for tests (aiosmtpd on an ephemeral port) that can misbehave on purpose.

Faults: answer a code (421/451/550) for a share of messages, drop the connection in the middle
of DATA, or stall past the client's timeout. Everything it accepted is kept, with its
Message-ID, so tests can count arrivals and duplicates.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

# A permanent refusal that is not about the address (a policy verdict): the row fails, and
# nothing is suppressed (a 550 5.1.1 "no such user" is a bounce since issue 21).
POLICY_REFUSAL = "550 5.7.1 message refused by local policy"


def ehlo_reply(
    session: Session, hostname: str, responses: list[str], *, pipelining: bool
) -> list[str]:
    """aiosmtpd's EHLO reply, with PIPELINING offered (RFC 2920) as Postfix, Exchange and the
    hosted Chinese providers do; aiosmtpd reads a pipelined group line by line either way."""
    session.host_name = hostname
    if pipelining:
        responses.insert(-1, "250-PIPELINING")
    return responses


@dataclass
class Faults:
    """What to do wrong. Rates are 0..1; `fail_first` applies to the first N attempts."""

    rate: float = 0.0
    code: str = "451 4.3.0 try again later"
    drop_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 5.0
    fail_first: int = 0
    reject: set[str] = field(default_factory=set)  # recipients answered `reject_reply`
    reject_reply: str = "550 5.1.1 no such user"
    seed: int = 1
    # A hosted account's limit: past `throttle_after` messages in a window of
    # `throttle_window` seconds (aligned on the clock), answer `throttle_code`.
    throttle_after: int = 0
    throttle_window: float = 1.0
    throttle_code: str = "451 4.7.1 too frequently sending, please try again later"


class Sink:
    """aiosmtpd handler: records accepted messages, injects faults."""

    def __init__(self, faults: Faults | None = None, *, pipelining: bool = True) -> None:
        self.faults = faults or Faults()
        self.pipelining = pipelining  # offered in EHLO (`ehlo_reply`)
        self.messages: list[Message] = []
        self.raw: list[bytes] = []  # every DATA received as sent, refused attempts too
        self.attempts = 0
        self.sessions: set[int] = set()  # distinct SMTP connections that sent DATA
        self.injected = Counter[str]()
        self._rand = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self.accepted_at: list[float] = []  # time.time() of each accepted message
        self._window = (-1, 0)  # (throttle window number, messages accepted in it)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        return ehlo_reply(session, hostname, responses, pipelining=self.pipelining)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.faults.reject:
            self.injected["550"] += 1
            return self.faults.reject_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        f = self.faults
        with self._lock:
            self.raw.append(envelope.content if isinstance(envelope.content, bytes) else b"")
            self.attempts += 1
            self.sessions.add(id(session))
            n = self.attempts
            roll = self._rand.random()
        if n <= f.fail_first or roll < f.rate:
            self.injected[f.code[:3]] += 1
            return f.code
        if f.throttle_after:
            with self._lock:
                number = int(time.time() // f.throttle_window)
                seen = self._window[1] if self._window[0] == number else 0
                if seen >= f.throttle_after:
                    self.injected["throttle"] += 1
                    return f.throttle_code
                self._window = (number, seen + 1)
        if roll < f.rate + f.drop_rate:
            self.injected["drop"] += 1
            assert session.transport is not None
            session.transport.close()
            return "421 dropped"
        if roll < f.rate + f.drop_rate + f.stall_rate:
            self.injected["stall"] += 1
            await asyncio.sleep(f.stall_seconds)
            return "451 4.4.2 too slow"
        data = envelope.content if isinstance(envelope.content, bytes) else b""
        msg = message_from_bytes(data, policy=default)
        with self._lock:
            self.messages.append(msg)
            self.accepted_at.append(time.time())
        return "250 2.0.0 OK"

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.messages]

    def duplicates(self) -> int:
        counts = Counter(self.message_ids())
        return sum(c - 1 for c in counts.values())

    def recipients(self) -> list[str]:
        return [str(m["To"]) for m in self.messages]

    def largest_burst(self, seconds: float = 1.0) -> int:
        """The most messages accepted within any `seconds` (a sliding window)."""
        times = sorted(self.accepted_at)
        best, first = 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= seconds:
                first += 1
            best = max(best, last - first + 1)
        return best


def free_port() -> int:
    """An ephemeral loopback port (aiosmtpd's controller cannot bind port 0 itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpServer:
    """Run a Sink on 127.0.0.1:<ephemeral> in aiosmtpd's own thread."""

    def __init__(
        self, faults: Faults | None = None, port: int | None = None, *, pipelining: bool = True
    ) -> None:
        self.sink = Sink(faults, pipelining=pipelining)
        self._running = False
        self.port = port or free_port()
        self._controller = Controller(
            self.sink, hostname="127.0.0.1", port=self.port, ready_timeout=5
        )

    def start(self) -> SmtpServer:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._controller.stop()
            self._running = False

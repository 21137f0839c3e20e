"""A standalone SMTP sink, run as its own process by the crash and multi-instance tests.

    python tests/sink_main.py --out arrivals.txt [--port 0] [--fault-rate 0.2 --code 451
        --code 421] [--drop-rate 0.1] [--latency 0.01] [--seed 1] [--no-pipelining]

Prints `READY <port>` on stdout once it listens. For each accepted message it appends one line
`<arrival_time> <Message-ID> <rcpt>` to --out, flushed per line, *before* answering 250: a
line in the file is a message the server took responsibility for, whether or not the client
lived to read the 250 (that window is the one duplicate SMTP cannot avoid). Every injected
fault is appended to `<out>.faults` as `<time> <kind>`, flushed per line, so the counts
survive a SIGKILL of this process too.

Faults, drawn once per DATA from `random.Random(seed)`:
- `--fault-rate R`: answer one of the `--code`s (451 and 421 are transient) instead of 250.
- `--drop-rate R`: close the connection without an answer after the message was received,
  i.e. in the middle of the DATA exchange as the client sees it (no reply to the final `.`).
- `--stall-first N`: the first N messages are received and never answered (a stalled
  server); the client must cut the send at its timeout and try again.
Nothing is recorded in --out for a faulted message: the client must send it again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import time
from email.parser import BytesHeaderParser
from typing import IO

from aiosmtpd.smtp import SMTP, Envelope, Session
from smtp_server import ehlo_reply  # tests/ is this script's first path entry

REPLIES = {
    "421": "421 4.7.0 too busy, closing connection",
    "450": "450 4.2.0 mailbox busy",
    "451": "451 4.3.0 try again later",
    "452": "452 4.3.1 insufficient storage",
    "550": "550 5.1.1 no such user",
}


class Handler:
    def __init__(self, args: argparse.Namespace, out: IO[str], faults: IO[str]) -> None:
        self.args = args
        self.out = out
        self.faults = faults
        self.rand = random.Random(args.seed)
        self.codes = args.code or ["451"]
        self.parser = BytesHeaderParser()
        self.stalls_left = args.stall_first

    def _fault(self, kind: str) -> None:
        self.faults.write(f"{time.time():.6f} {kind}\n")
        self.faults.flush()

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        return ehlo_reply(session, hostname, responses, pipelining=not self.args.no_pipelining)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        a = self.args
        if self.stalls_left > 0:
            self.stalls_left -= 1
            self._fault("stall")
            await asyncio.Event().wait()  # until the client gives up and the session ends
        if a.latency > 0:
            await asyncio.sleep(a.latency)
        roll = self.rand.random()
        if roll < a.fault_rate:
            code = self.codes[int(self.rand.random() * len(self.codes))]
            self._fault(code)
            if code == "421" and server.transport is not None:
                # 421 means the server closes the channel (RFC 5321 3.8): do so after answering.
                asyncio.get_running_loop().call_soon(server.transport.close)
            return REPLIES.get(code, f"{code} fault injected")
        if roll < a.fault_rate + a.drop_rate:
            self._fault("drop")
            if server.transport is not None:
                server.transport.abort()
            return "421 dropped"  # never reaches the client: the transport is gone
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        headers = self.parser.parsebytes(raw)
        msg_id = str(headers.get("Message-ID", "-")).strip() or "-"
        for rcpt in envelope.rcpt_tos:
            self.out.write(f"{time.time():.6f} {msg_id} {rcpt}\n")
        self.out.flush()
        return "250 2.0.0 OK"


async def serve(args: argparse.Namespace) -> None:
    # Opened once before serving (a blocking open is harmless here); closed in `finally`.
    out = open(args.out, "a", encoding="utf-8")  # noqa: ASYNC230
    faults = open(args.out + ".faults", "a", encoding="utf-8")  # noqa: ASYNC230
    handler = Handler(args, out, faults)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", ident="notifier test sink"),
        host=args.host,
        port=args.port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
        out.close()
        faults.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", required=True, help="file of accepted messages, one line each")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share answered with a --code")
    p.add_argument("--code", action="append", help="fault reply code, repeatable (default 451)")
    p.add_argument("--drop-rate", type=float, default=0.0, help="share dropped with no reply")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each DATA reply")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING")
    p.add_argument("--stall-first", type=int, default=0, help="never answer the first N DATA")
    args = p.parse_args(argv)
    if args.fault_rate + args.drop_rate > 1:
        p.error("--fault-rate + --drop-rate must be at most 1")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

"""A Python SMTP sink (aiosmtpd) for the benchmarks; optionally logs arrival times.

    python bench/_sink.py --port 2525 [--log arrivals.txt]

Each accepted message adds `<time.time()> <recipient>` to memory; SIGTERM writes the log and
exits (writing per message would cost the sink time while it is being measured).
"""

from __future__ import annotations

import os
import sys

# bench/calendar.py would shadow the standard `calendar` module (email imports it).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402


class Handler:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.arrivals.append((time.time(), envelope.rcpt_tos[0] if envelope.rcpt_tos else ""))
        return "250 2.0.0 OK"


async def main(port: int, log: Path | None) -> None:
    handler = Handler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.local", ident="bench-sink"),
        "127.0.0.1",
        port,
        backlog=1024,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    if log is not None:
        tmp = log.with_suffix(".tmp")
        tmp.write_text("".join(f"{t:.6f} {r}\n" for t, r in handler.arrivals))
        tmp.replace(log)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.log))

"""Webhooks, counted in CPU instructions: `notifier run` beside the bare handler, under callgrind.

req/s on this machine moves by +-20% between runs (other tenants of the host), which hides a
change of a few percent. Instructions do not: each server runs under valgrind's callgrind,
counting starts after a warm-up, and the same signed requests as `bench/webhooks.py` are sent
(10 connections). Prints instructions per request for both servers, where notifier's go (by
shared object: the interpreter, SQLite, libc, OpenSSL, the rest) and the ratio bare/notifier,
the rate ratio the CPU alone would allow. Needs valgrind (Debian package `valgrind`); not part
of `make bench` (about half a minute; the servers run some 50 times slower under it).

Kernel time (SQLite's WAL writes) is not counted; see BENCHMARKS.md for what it adds.

    .venv/bin/python bench/instructions.py [--requests 1000]
"""

from __future__ import annotations

import os
import sys

# bench/calendar.py would shadow the standard `calendar` module: keep bench/ off sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.append(os.path.dirname(_HERE))  # for `bench._common`; PYTHONPATH may override notifier

import argparse  # noqa: E402
import asyncio  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

from bench._common import machine, table  # noqa: E402
from bench.webhooks import (  # noqa: E402
    BARE_SERVER,
    HOOK,
    WARMUP,
    clean_env,
    drive,
    free_port,
    make_requests,
    service_env,
    stop,
    wait_port,
    write_config,
)

# Shared objects whose instructions are reported apart; the rest is "other".
PARTS = {
    "Python": "libpython",
    "SQLite": "libsqlite3",
    "libc": "libc.so",
    "OpenSSL": "libcrypto",
}
# Bound on start-up and on each phase: under valgrind everything runs some 50 times slower.
START_TIMEOUT = 300.0


def by_object(outfile: Path) -> tuple[int, Counter[str]]:
    """The total and the instructions per part, from `callgrind_annotate`'s report."""
    report = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(outfile)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    parts: Counter[str] = Counter()
    total = 0
    for line in report.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        if "PROGRAM TOTALS" in line:
            total = int(m.group(1).replace(",", ""))
            continue
        count, where = int(m.group(1).replace(",", "")), m.group(2)
        # An inlined function has no [object], only its source file (CPython's headers).
        obj = where.rpartition("[")[2] if "[" in where else where.replace("/Python-", "libpython")
        name = next((part for part, lib in PARTS.items() if lib in obj), "other")
        parts[name] += count
    return total, parts


def measure(
    name: str, cmd: list[str], port: int, env: dict[str, str], root: Path, n: int
) -> tuple[int, Counter[str]]:
    """(instructions, by part) of `n` accepted requests, counted after a warm-up."""
    outfile = root / f"callgrind.{name}"
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={outfile}",
            *cmd,
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/hooks/{HOOK}"
    try:
        wait_port(port, proc, name, timeout=START_TIMEOUT)
        asyncio.run(drive(url, make_requests(WARMUP, deliver_now=False), START_TIMEOUT))
        subprocess.run(
            ["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True
        )
        result = asyncio.run(drive(url, make_requests(n, deliver_now=False), START_TIMEOUT))
        subprocess.run(
            ["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True
        )
    finally:
        code = stop(proc, timeout=START_TIMEOUT)
    if result.accepted != n or code != 0:
        raise SystemExit(f"{name}: {result.accepted} of {n} accepted, exit code {code}")
    return by_object(outfile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="counted requests per server")
    parser.add_argument(
        "--secret-in-dotenv",
        action="store_true",
        help="the hook secret in the service's `.env` file instead of its environment",
    )
    args = parser.parse_args()
    missing = [
        tool
        for tool in ("valgrind", "callgrind_control", "callgrind_annotate")
        if not shutil.which(tool)
    ]
    if missing:
        raise SystemExit(
            f"bench/instructions.py needs {', '.join(missing)} (Debian: apt-get install valgrind)"
        )

    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        root = Path(tmp)
        write_config(root)
        env = clean_env()
        notifier_port, bare_port = free_port(), free_port()
        notifier_env = service_env(root, notifier_port, "uvloop")
        if args.secret_in_dotenv:
            secret = notifier_env.pop("NOTIFIER_HOOK_BENCH")
            (root / ".env").write_text(f"NOTIFIER_HOOK_BENCH={secret}\n")
        n = args.requests
        bare, bare_parts = measure(
            "bare",
            [sys.executable, "-c", BARE_SERVER, str(bare_port), "uvloop"],
            bare_port,
            env,
            root,
            n,
        )
        notifier, parts = measure(
            "notifier",
            [sys.executable, "-m", "notifier.cli", "run"],
            notifier_port,
            notifier_env,
            root,
            n,
        )

    print("## Webhooks in instructions (callgrind)\n")
    print(
        f"{n} requests per server after {WARMUP} warm-up, 10 connections, uvloop;"
        " user-space instructions only"
    )
    columns = ["Python", "SQLite", "libc", "OpenSSL", "other"]
    rows = [
        [name, f"{total / n:,.0f}", *(f"{p[c] / n:,.0f}" for c in columns)]
        for name, total, p in (("bare", bare, bare_parts), ("notifier", notifier, parts))
    ]
    print(table(["server", "instructions/request", *columns], rows))
    print(f"ratio bare/notifier by instructions: {bare / notifier:.0%}")
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()

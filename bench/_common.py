"""Shared pieces of the benchmarks: machine line, SMTP sinks, throwaway configs and databases.

Every bench script starts with the same three lines that take `bench/` off `sys.path`:
`bench/calendar.py` would otherwise shadow the standard library's `calendar` module.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CACHE = BENCH / ".cache"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

SUBJECT = "【提醒】{{ event.title }}（{{ event.start | cn_date }}）"
BODY = (
    "{{ recipient.name }}：\n"
    "{{ event.title }}，{{ reminder.label }}，还有{{ days_until }}天。\n"
    "{{ org }}\n"
    "{% if unsubscribe_url %}退订 Unsubscribe: {{ unsubscribe_url }}{% endif %}\n"
)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine(sink: str | None = None) -> str:
    """One line that says where the numbers come from."""
    parts = [
        f"cores={os.cpu_count()}",
        f"cpu={cpu_model()}",
        f"python={platform.python_version()}",
        f"os={platform.system()} {platform.release()}",
    ]
    if sink:
        parts.append(f"sink={sink}")
    return "machine: " + "; ".join(parts)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable on a terminal too)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sink exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"sink did not listen on port {port} within {timeout} s")


# --- the C smtp-sink from Debian's postfix package (extracted, not installed) ---------------


@dataclass(frozen=True)
class SinkBinary:
    path: Path
    env: dict[str, str]


def _sink_binary(root: Path) -> SinkBinary | None:
    path = root / "usr/sbin/smtp-sink"
    if not path.is_file():
        return None
    env = dict(os.environ)
    libs = root / "usr/lib/postfix"
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(libs), env.get("LD_LIBRARY_PATH")) if p)
    return SinkBinary(path, env)


def find_smtp_sink(*, fetch: bool = True) -> SinkBinary | None:
    """`smtp-sink` on PATH, or in bench/.cache, or fetched there with `apt-get download`."""
    on_path = shutil.which("smtp-sink")
    if on_path:
        return SinkBinary(Path(on_path), dict(os.environ))
    root = CACHE / "postfix"
    found = _sink_binary(root)
    if found or not fetch or not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        return found
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        try:
            subprocess.run(
                ["apt-get", "download", "postfix"],
                cwd=tmp,
                check=True,
                timeout=120,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            debs = sorted(Path(tmp).glob("postfix_*.deb"))
            if not debs:
                return None
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True, timeout=60)
        except (subprocess.SubprocessError, OSError) as exc:
            print(
                f"note: could not fetch smtp-sink ({exc}); using the aiosmtpd sink", file=sys.stderr
            )
            return None
    return _sink_binary(root)


@dataclass
class Sink:
    port: int
    kind: str
    proc: subprocess.Popen[bytes]
    log: Path | None = None


@contextlib.contextmanager
def smtp_sink(kind: str = "auto", *, log: Path | None = None) -> Iterator[Sink]:
    """An SMTP sink in another process on a free loopback port; stopped on exit.

    kind: "c" (postfix smtp-sink), "python" (aiosmtpd, bench/_sink.py; can log arrival times
    to `log`) or "auto" (c if it can be had).
    """
    port = free_port()
    binary = find_smtp_sink() if kind in ("auto", "c") and log is None else None
    if kind == "c" and binary is None:
        raise RuntimeError("smtp-sink not available")
    if binary is not None:
        args = [str(binary.path)]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]  # it drops root privileges, to user postfix by default
        args += [f"127.0.0.1:{port}", "1024"]
        proc = subprocess.Popen(args, env=binary.env, stdout=subprocess.DEVNULL)
        # Named relative to the repository: BENCHMARKS.md must not point outside it.
        shown = binary.path.relative_to(ROOT) if binary.path.is_relative_to(ROOT) else binary.path
        name = f"postfix smtp-sink (C, {shown})"
    else:
        args = [sys.executable, str(BENCH / "_sink.py"), "--port", str(port)]
        if log is not None:
            args += ["--log", str(log)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        name = "aiosmtpd sink (Python, bench/_sink.py)"
    try:
        wait_port(port, proc)
        yield Sink(port, name, proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- throwaway configs and databases --------------------------------------------------------


def write_outreach_config(work: Path, *, external: bool = True) -> tuple[Path, Path]:
    """Schedules and templates under `work` for one outreach send, 30 days ahead, to the
    CSV audience at `work/schedules/audience.csv` (written by the caller), `external` or
    the office's own."""
    schedules, templates = work / "schedules", work / "templates"
    schedules.mkdir(exist_ok=True)
    write_templates(templates)
    day = (datetime.now() + timedelta(days=30)).date().isoformat()
    (schedules / "outreach.yaml").write_text(
        "audiences:\n"
        f"  enterprises: {{csv: {work / 'schedules' / 'audience.csv'},"
        f" external: {'true' if external else 'false'}}}\n"
        "events:\n"
        "  - id: outreach\n"
        "    title: 企业外联通知\n"
        f'    date: "{day}"\n'
        "    workdays: ignore\n"
        "    audience: enterprises\n"
        "    reminders: [{on: start}]\n",
        encoding="utf-8",
    )
    return schedules, templates


def write_templates(directory: Path, name: str = "reminder") -> Path:
    (directory / name).mkdir(parents=True, exist_ok=True)
    (directory / name / "subject.txt").write_text(SUBJECT + "\n", encoding="utf-8")
    (directory / name / "body.txt").write_text(BODY, encoding="utf-8")
    return directory


def write_audience_csv(path: Path, count: int) -> Path:
    """`count` recipients; `path` inside the schedules directory (audience files outside it
    are refused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,company\n")
        for i in range(count):
            out.write(f"user{i:06d}@corp{i % 97}.example.com,联系人{i},企业{i % 997}\n")
    return path


@contextlib.contextmanager
def pg_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database (dropped afterwards), or None if PostgreSQL is not there."""
    try:
        import psycopg
    except ImportError:
        yield None
        return
    name = f"notifier_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        print(f"note: PostgreSQL not available at {PG_ADMIN_URL}: {exc}", file=sys.stderr)
        yield None
        return
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2

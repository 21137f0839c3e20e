"""Logging: one JSON object per line (NOTIFIER_LOG_FORMAT=json) or readable text.

Log records carry `extra={"action": ...}`; tests and operators filter on the action.
Secrets never reach a record: settings hold them as SecretStr, and message bodies are not logged.
A warning repeated in a loop (a database outage, a dead mail server) is written once, then
counted and summarised once a minute (`RepeatFilter`), so a fault of minutes writes kilobytes.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

# The names a `LogRecord` holds itself: `extra=` may not use them (logging raises KeyError for
# "message", "asctime" and every attribute of a record), and they are not printed as extras.
# "taskName" is an attribute from Python 3.12 on.
RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in RESERVED}


class JsonFormatter(logging.Formatter):
    """One JSON object a line; `ts` is ISO 8601 in UTC with its offset (+00:00)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A readable line whose time carries its offset (`2026-12-06 19:56:16+08:00`).

    The time is in `tz` (the service's time zone, that of the send times in the messages), or
    the machine's own zone if none is given; the offset says which, so a line is never read as
    local time when it is UTC, or the reverse.
    """

    def __init__(self, tz: tzinfo | None = None) -> None:
        super().__init__()
        self.tz = tz

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, self.tz).astimezone(self.tz)
        ts = when.isoformat(sep=" ", timespec="seconds")
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname:<7} {record.getMessage()}"
        if extras:
            line += f"  [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


# A warning seen again within this long is counted, not written; the next one after it carries
# the count ("N more like this"). A fault of minutes then writes a line a minute, not a loop's.
REPEAT_WINDOW_SECONDS = 60.0
# Kinds of warning remembered at once (the oldest is forgotten first): log templates are few,
# this only bounds memory if a caller puts variable text in the message itself.
REPEAT_KEYS_MAX = 512


class RepeatFilter(logging.Filter):
    """Pass the first of a kind of warning, count the repeats, summarise them once a window.

    A kind is (logger, level, message template, `action`): the same warning about different
    rows is one kind. Records below `level` always pass. The first record of a kind after its
    window passes with `repeated=N` and " (N more like this in the last 60 s)" appended;
    `flush()` writes those summaries for kinds whose window ran out with no new record, so the
    count of a fault that ended is not lost. Thread-safe (records come from threads too).
    """

    def __init__(
        self,
        *,
        window: float = REPEAT_WINDOW_SECONDS,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = REPEAT_KEYS_MAX,
    ) -> None:
        super().__init__()
        self.window = window
        self.level = level
        self.clock = clock
        self.max_keys = max_keys
        self.suppressed = 0  # total records dropped, for tests and metrics
        # kind -> [window start, repeats dropped since, a record of the kind to summarise]
        self._seen: OrderedDict[tuple[object, ...], list[Any]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _kind(record: logging.LogRecord) -> tuple[object, ...]:
        return (record.name, record.levelno, str(record.msg), getattr(record, "action", None))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level or getattr(record, "repeated", None) is not None:
            return True
        kind = self._kind(record)
        now = self.clock()
        with self._lock:
            entry = self._seen.get(kind)
            if entry is not None and now - entry[0] < self.window:
                entry[1] += 1
                entry[2] = record
                self.suppressed += 1
                return False
            repeats = entry[1] if entry is not None else 0
            self._seen[kind] = [now, 0, None]
            self._seen.move_to_end(kind)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
        if repeats:
            _mark_repeated(record, repeats, self.window)
        return True

    def flush(self) -> list[logging.LogRecord]:
        """Summaries (one record per kind) of repeats whose window has run out; forgets them.

        The caller hands them to its handler (`flush_repeats` does).
        """
        now = self.clock()
        out: list[logging.LogRecord] = []
        with self._lock:
            for kind, entry in list(self._seen.items()):
                if now - entry[0] < self.window:
                    continue
                if entry[1] and entry[2] is not None:
                    last: logging.LogRecord = entry[2]
                    summary = logging.makeLogRecord(vars(last))
                    summary.exc_info = summary.exc_text = None
                    _mark_repeated(summary, entry[1], self.window)
                    out.append(summary)
                del self._seen[kind]
        return out


def _mark_repeated(record: logging.LogRecord, repeats: int, window: float) -> None:
    record.msg = f"{record.getMessage()} ({repeats} more like this in the last {window:.0f} s)"
    record.args = None
    record.repeated = repeats


def flush_repeats() -> None:
    """Write the pending summaries of every RepeatFilter on the root logger's handlers.

    Called about once a window by the running service.
    """
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RepeatFilter):
                for record in flt.flush():
                    handler.handle(record)


def setup_logging(fmt: str = "text", level: str = "INFO", tz: tzinfo | None = None) -> None:
    """Make the root logger write `fmt` lines to stderr at `level`, text times in `tz`.

    Replaces every handler the root logger had: a process logs one way.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(tz))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter at INFO drowns the actions that matter.
    for noisy in ("apscheduler", "aiohttp.access", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

"""Reloading the config: on a file change, on SIGHUP, or when the console asks.

The files are read and checked in a worker thread (a 200,000-row CSV audience took 2.3 s to
check, and HTTP stood still while it did); only the swap runs on the event loop. Reloads run
one at a time, so a later reload never applies older files. Nothing ends the watcher but the
service's stop: a MemoryError or a bug in a check used to end it silently, and no later edit,
the fix included, was loaded (issue 17).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from notifier.compose.rendering import Renderer
from notifier.config import Settings
from notifier.constants import ERROR_VALUE_CHARS
from notifier.delivery.weather import backoff
from notifier.errors import ConfigError
from notifier.schedule.files import clip
from notifier.schedule.model import Schedule

log = logging.getLogger(__name__)

# The config watcher, when watching itself fails, starts again after a backoff from this base
# up to this cap (seconds): a directory being replaced comes back within the first tries.
WATCH_RETRY_BASE = 1.0
WATCH_RETRY_CAP = 30.0


@dataclass(frozen=True, slots=True)
class Loaded:
    """A config read and checked, not yet running."""

    schedule: Schedule
    renderer: Renderer
    warnings: list[str]
    hook_secrets: dict[str, SecretStr]


def brief(exc: BaseException) -> str:
    """`Type: message` for a log line or a config error, the message clipped."""
    return clip(f"{type(exc).__name__}: {exc}", ERROR_VALUE_CHARS)


class Reloadable(Protocol):
    """What a reload needs of the App, which owns the running config."""

    settings: Settings
    config_errors: list[str]

    def clock(self) -> float: ...

    def load_files(self) -> Loaded:
        """Read and check the files, changing nothing (safe in a worker thread)."""
        ...

    def apply(self, loaded: Loaded) -> None:
        """Swap the running config (on the loop)."""

    def reject(self, errors: list[str]) -> None:
        """Keep the running config; say why the files were not taken."""

    def reload_crashed(self, exc: BaseException) -> None:
        """A reload died of something other than a config error."""

    async def after_reload(self, ok: bool) -> None:
        """Tell the admins what changed (or why it was refused), then replan."""

    async def announce_rejected(self) -> None:
        """Tell the admins the running config is older than the files."""


class Reloader:
    """Runs reloads for an App: one at a time, off the loop, surviving anything."""

    def __init__(self, app: Reloadable) -> None:
        self.app = app
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def reload(self) -> bool:
        """Reload on the caller's thread; False (the running config kept) if refused."""
        try:
            loaded = self.app.load_files()
        except ConfigError as exc:
            self.app.reject(exc.errors)
            return False
        self.app.apply(loaded)
        return True

    async def off_loop(self) -> bool:
        """`reload`, with the files read and checked in a worker thread."""
        async with self._lock:
            try:
                loaded = await asyncio.to_thread(self.app.load_files)
            except ConfigError as exc:
                self.app.reject(exc.errors)
                return False
            self.app.apply(loaded)
            return True

    def request(self) -> asyncio.Task[None]:
        """Reload soon, from a signal handler (SIGHUP); the task, for those who wait on it."""
        task = asyncio.get_running_loop().create_task(self.guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def guarded(self) -> None:
        """Reload and do what follows, surviving anything but being told to stop: a failure
        is logged, the running config kept, and it shows where config errors do (/readyz,
        /api/config, the console, the admins' notice)."""
        try:
            await self.app.after_reload(await self.off_loop())
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise  # the service is being stopped: not a reload's problem
        except BaseException as exc:
            self.app.reload_crashed(exc)
            try:
                await self.app.announce_rejected()
            except Exception as again:
                log.error(
                    "reload failure not announced",
                    extra={"action": "admin_notice_failed", "error": brief(again)},
                )

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload on each change of the files, until `stop`; never ends before it.

        A failing watch (a directory removed, an inotify limit) is logged and started again
        after a backoff, followed by one reload for the changes it may have missed.
        """
        from watchfiles import awatch

        settings = self.app.settings
        dirs = [settings.schedules_dir, settings.templates_dir]
        failures = 0
        while not stop.is_set():
            try:
                if failures:
                    await self.guarded()
                async for _changes in awatch(*dirs, stop_event=stop, debounce=300, step=100):
                    failures = 0
                    await self.guarded()
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                failures += 1
                log.error(
                    "config watcher failed; it starts again",
                    extra={"action": "config_watch_failed", "error": brief(exc)},
                )
                delay = backoff(
                    failures, base=WATCH_RETRY_BASE, cap=WATCH_RETRY_CAP, rand=random.random
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

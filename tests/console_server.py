"""A real notifier HTTP side (App + aiohttp + delivery worker) in a thread of its own, for tests
that drive it from outside the event loop: the browser tests (Playwright's sync API) and the
console benchmark. `call` runs a coroutine on the service's loop, e.g. to seed the ledger.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from notifier.config import Settings
from notifier.service import App
from notifier.web import bound_port, start_http

T = TypeVar("T")
START_TIMEOUT = 30.0


class ConsoleServer:
    def __init__(
        self, settings: Settings, *, clock: Callable[[], float], worker: bool = True
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.worker = worker
        self.port = 0
        self.app: App | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="console-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConsoleServer:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the console server did not start")
        if self._error is not None:
            raise RuntimeError("the console server failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)

    def call(self, fn: Callable[[App], Awaitable[T]]) -> T:
        """Run `fn(app)` on the service's loop and wait for its result."""
        assert self._loop is not None and self.app is not None
        app = self.app

        async def run() -> T:
            return await fn(app)

        future: Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(START_TIMEOUT)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with App(self.settings, clock=self.clock) as app:
            self.app = app
            runner = await start_http(app)
            tasks: list[asyncio.Task[Any]] = []
            try:
                self.port = bound_port(runner)
                if self.worker:
                    tasks.append(asyncio.create_task(app.worker.run(self._stop, drain_timeout=1)))
                self._ready.set()
                await self._stop.wait()
                await asyncio.gather(*tasks)
            finally:
                await runner.cleanup()

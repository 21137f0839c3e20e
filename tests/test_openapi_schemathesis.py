"""schemathesis against the live HTTP side: no 5xx, and every answer matches /openapi.json."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from notifier.config import HttpSettings, Settings
from notifier.service import App
from notifier.web import bound_port, start_http
from notifier.web.openapi import openapi_spec
from tests.conftest import write_schedule, write_templates

ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SCHEMA = schemathesis.openapi.from_dict(openapi_spec())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


class LiveServer:
    """`start_http` on an ephemeral port, in its own thread and event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="live-notifier", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with App(self.settings) as app:
            runner = await start_http(app)
            try:
                self.port = bound_port(runner)
                self._ready.set()
                await self._stop.wait()
            finally:
                await runner.cleanup()

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # conftest's fixtures are function-scoped; build the same settings for the module here.
    root: Path = tmp_path_factory.mktemp("live")
    write_schedule(root / "schedules")
    write_templates(root / "templates")
    mp = pytest.MonkeyPatch()
    mp.setenv("NOTIFIER_HOOK_VISIT_REQUEST", "whsec_c2NoZW1hdGhlc2lzLXNlY3JldC0wMTIzNDU2Nzg5")
    live = LiveServer(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            schedules_dir=root / "schedules",
            templates_dir=root / "templates",
            database_url=f"sqlite:///{root / 'ledger.db'}",
            mail_drop_dir=root / "mail",
            admin_token=SecretStr("admin-token-for-tests"),
            # Else the feed is a (documented) 503.
            calendar_token=SecretStr("calendar-token-for-tests"),
            unsubscribe_secret=SecretStr("unsubscribe-secret"),
            http=HttpSettings(port=0),
            watch=False,
        )
    )
    try:
        yield live.start()
    finally:
        live.stop()
        mp.undo()


# Bounded so the module stays a few seconds: each operation gets this many requests per mode.
EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 15}


# Negative cases (values outside the schemas) only where an operation takes any input.
CASES = [
    pytest.param(op, mode, id=f"{op.label} {mode}")
    for op in OPERATIONS
    for mode in EXAMPLES
    if mode is GenerationMode.POSITIVE or {"parameters", "requestBody"} & set(op.definition.raw)
]


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_the_api_matches_its_description(
    operation: Any, mode: GenerationMode, base_url: str
) -> None:
    session = requests.Session()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=ADMIN, timeout=10)
        case.validate_response(response, checks=CHECKS)

    check()

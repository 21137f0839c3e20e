"""Logging as the service does it: every `extra=` makes a record (no reserved names), send-now
answers 2xx with the service's logging set up, and log times carry their zone."""

from __future__ import annotations

import ast
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from notifier.logs import JsonFormatter, TextFormatter
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import ROOT, MakeSettings, log_as_the_service
from tests.console_fixtures import ADMIN_TOKEN, NOW, console_settings, hook_secret_env
from tests.procs import Procs, free_port, notifier_env, wait_until, write_config

__all__ = ["hook_secret_env"]

Client = TestClient[Any, Any]
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
SHANGHAI = ZoneInfo("Asia/Shanghai")
# What `extra=` may not name: logging raises KeyError for these when it makes the record.
# "taskName" is a record attribute from Python 3.12 on.
RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


def records(caplog: pytest.LogCaptureFixture, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == action]


@pytest.fixture
async def api(make_settings: MakeSettings) -> AsyncIterator[tuple[App, Client]]:
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            yield app, client


# --- send-now with the service's logging ------------------------------------------------------


async def test_send_now_over_the_api_answers_200_with_the_services_logging(
    api: tuple[App, Client], caplog: pytest.LogCaptureFixture
) -> None:
    assert logging.getLogger().isEnabledFor(logging.INFO)  # the autouse fixture's doing
    _, client = api
    resp = await client.post("/api/events/security-day/send", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"created": 2, "audience": 2}
    (record,) = records(caplog, "api_send")
    assert vars(record)["rows_created"] == 2


def form_token(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def test_the_consoles_send_now_redirects_to_the_ledger_with_the_services_logging(
    tmp_path: Path, hook_secret_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    async with App(console_settings(tmp_path), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            page = await (await c.get("/")).text()
            signed_in = await c.post(
                "/signin",
                data={"csrf": form_token(page), "token": ADMIN_TOKEN, "next": "/"},
                allow_redirects=False,
            )
            assert signed_in.status == 303
            confirm = await (await c.get("/events/security-day/send")).text()
            resp = await c.post(
                "/events/security-day/send",
                data={"csrf": form_token(confirm)},
                allow_redirects=False,
            )
            assert resp.status == 303, await resp.text()
            assert resp.headers["Location"].startswith("/deliveries?")
            assert "sent" in resp.headers["Location"]
    (record,) = records(caplog, "console_send")
    assert vars(record)["rows_created"] > 0


async def test_send_now_logs_one_json_line_with_the_rows_created(
    api: tuple[App, Client], capsys: pytest.CaptureFixture[str]
) -> None:
    log_as_the_service("json")  # now, so that the handler writes to capsys's stderr
    _, client = api
    resp = await client.post("/api/events/security-day/send", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (sent,) = [line for line in lines if line.get("action") == "api_send"]
    assert sent["rows_created"] == 2 and sent["audience"] == 2
    assert sent["event"] == "security-day" and sent["msg"] == "manual send"
    assert datetime.fromisoformat(sent["ts"]).utcoffset() == timedelta(0)


def test_a_real_notifier_run_logs_local_times_with_their_offset_and_answers_send_now(
    tmp_path: Path,
) -> None:
    """The process as operators run it (text logs, TZ=UTC machine, Shanghai service zone)."""
    config = write_config(tmp_path, audience=2)
    port = free_port()
    env = notifier_env(
        config,
        database_url=f"sqlite:///{tmp_path / 'n.db'}",
        smtp_port=1,
        http_port=port,
        NOTIFIER_LOG_FORMAT="text",
        NOTIFIER_TIMEZONE="Asia/Shanghai",
        NOTIFIER_ADMIN_TOKEN="admin-token-for-tests",
        NOTIFIER_MAIL_DROP_DIR=str(tmp_path / "mail"),
        TZ="UTC",
    )
    del env["NOTIFIER_SMTP__HOST"]  # the mail drop: nothing here is about SMTP

    def send_now() -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/events/{config.event_id}/send",
            data=b"",
            method="POST",
            headers=ADMIN,
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0  # not listening yet

    with Procs(tmp_path) as procs:
        service = procs.notifier(env, cwd=tmp_path)
        status: list[int] = []

        def answered() -> bool:
            status.append(send_now())
            return status[-1] != 0 or not service.alive()

        wait_until(answered, within=20, what="an answer to send-now")
        assert status[-1] == 200, service.describe()
        assert service.terminate(within=15) == 0, service.describe()
    text = service.log.read_text(encoding="utf-8")
    (line,) = [line for line in text.splitlines() if "manual send" in line]
    assert "rows_created=2" in line
    stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+08:00) INFO ", line)
    assert stamp, line
    logged = datetime.fromisoformat(stamp.group(1))
    assert abs(logged - datetime.now(UTC)) < timedelta(minutes=1)


# --- no reserved names in `extra=` ------------------------------------------------------------


def _dict_keys(node: ast.expr) -> list[str] | None:
    """The keys of `{...}`, `dict(...)`, `a | b` or `a if c else b` of those, or None if they
    cannot all be read from the source."""
    if isinstance(node, ast.BinOp | ast.IfExp):
        parts = [node.left, node.right] if isinstance(node, ast.BinOp) else [node.body, node.orelse]
        if isinstance(node, ast.BinOp) and not isinstance(node.op, ast.BitOr):
            return None
        keys = [_dict_keys(part) for part in parts]
        return None if None in keys else [k for got in keys if got is not None for k in got]
    if isinstance(node, ast.Dict):
        keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
        return None if any(not isinstance(k, str) for k in keys) else [str(k) for k in keys]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args or any(k.arg is None for k in node.keywords):
            return None
        return [str(k.arg) for k in node.keywords]
    return None


def _variable_keys(scope: ast.AST, name: str) -> list[str] | None:
    """Keys given to the dict variable `name` in `scope`: its `name = {...}` assignments and
    every `name["key"] = ...`; None if any of them cannot be read."""
    keys: list[str] = []
    found = False
    for node in ast.walk(scope):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name) and target.id == name and value is not None:
                found = True
                got = _dict_keys(value)
                if got is None:
                    return None
                keys += got
            elif (
                isinstance(target, ast.Subscript)
                and isinstance(target.value, ast.Name)
                and target.value.id == name
            ):
                if not (
                    isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str)
                ):
                    return None
                keys.append(target.slice.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == name and node.func.attr == "update":
                return None  # keys not visible one by one
    return keys if found else None


def extra_problems(source: str, filename: str) -> list[str]:
    """Every logger call in `source` whose `extra=` uses a reserved name, or cannot be read."""
    tree = ast.parse(source, filename)
    problems: list[str] = []
    scopes: list[ast.AST] = [tree]
    scopes += [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for scope in scopes:
        nested = {
            id(n)
            for fn in ast.walk(scope)
            if fn is not scope and isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(fn)
        }
        for node in ast.walk(scope):
            if id(node) in nested or not isinstance(node, ast.Call):
                continue
            if not (isinstance(node.func, ast.Attribute) and node.func.attr in LOG_METHODS):
                continue
            for kw in node.keywords:
                if kw.arg != "extra":
                    continue
                where = f"{filename}:{node.lineno}"
                if isinstance(kw.value, ast.Name):
                    keys = _variable_keys(scope, kw.value.id)
                else:
                    keys = _dict_keys(kw.value)
                if keys is None:
                    problems.append(f"{where}: extra= is not a dict whose keys can be read")
                    continue
                problems += [
                    f"{where}: extra key {k!r} is a LogRecord attribute"
                    for k in keys
                    if k in RESERVED
                ]
    return problems


@pytest.mark.parametrize(
    "source",
    [
        'log.info("x", extra={"action": "a", "created": 1})',
        'logger.warning("x", extra=dict(action="a", message="m"))',
        'def f():\n    extra = {"action": "a"}\n    extra["name"] = 1\n'
        '    log.error("x", extra=extra)',
        'log.info("x", extra=something())',
        'log.log(20, "x", extra={"action": "a"} | ({"msg": 1} if e else {}))',
    ],
)
def test_the_extra_scan_finds_a_reserved_or_unreadable_key(source: str) -> None:
    assert extra_problems(source, "sample.py")


def test_no_log_call_in_the_package_uses_a_reserved_record_attribute() -> None:
    files = sorted((ROOT / "notifier").rglob("*.py"))
    assert len(files) > 20
    problems = [
        p
        for path in files
        for p in extra_problems(path.read_text("utf-8"), str(path.relative_to(ROOT)))
    ]
    assert problems == []


def test_the_scan_reads_every_extra_in_the_package() -> None:
    """The scan is not vacuous: it sees the package's log calls with `extra=`."""
    seen = 0
    for path in (ROOT / "notifier").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in LOG_METHODS and any(k.arg == "extra" for k in node.keywords):
                    seen += 1
    assert seen > 50


# --- times with their zone --------------------------------------------------------------------


def record_at(when: datetime) -> logging.LogRecord:
    record = logging.makeLogRecord({"msg": "timer set", "levelname": "INFO", "action": "timer_set"})
    record.created = when.timestamp()
    return record


def test_a_text_line_gives_the_time_in_the_service_zone_with_its_offset() -> None:
    when = datetime(2026, 12, 6, 11, 56, 16, tzinfo=UTC)
    line = TextFormatter(SHANGHAI).format(record_at(when))
    assert line.startswith("2026-12-06 19:56:16+08:00 INFO    timer set")
    assert line.endswith("[action=timer_set]")


def test_a_text_line_without_a_zone_still_says_its_offset() -> None:
    line = TextFormatter().format(record_at(datetime(2026, 12, 6, 11, 56, 16, tzinfo=UTC)))
    stamp = datetime.fromisoformat(line[:25])
    assert stamp.utcoffset() is not None
    assert stamp == datetime(2026, 12, 6, 11, 56, 16, tzinfo=UTC)


def test_a_json_line_gives_an_iso_time_in_utc_with_its_offset() -> None:
    when = datetime(2026, 12, 6, 11, 56, 16, 250000, tzinfo=UTC)
    data = json.loads(JsonFormatter().format(record_at(when)))
    assert data["ts"] == "2026-12-06T11:56:16.250+00:00"
    assert datetime.fromisoformat(data["ts"]) == when


def test_the_services_text_log_is_set_up_in_its_zone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_TIMEZONE", "Asia/Shanghai")
    log_as_the_service("text")
    logging.getLogger("notifier.test").info("hello", extra={"action": "hello"})
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "hello" in x]
    stamp = datetime.fromisoformat(line[:25])
    assert stamp.utcoffset() == timedelta(hours=8)  # NOTIFIER_TIMEZONE's default
    assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=1)

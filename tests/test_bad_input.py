"""Bad input everywhere: a clear error, never a traceback, nothing lost."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.errors import ConfigError, HeaderError, StoreError
from notifier.ledger.models import State
from notifier.schedule.load import load_schedule
from notifier.schedule.recipients import check_address
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import SmtpServer
from tests.test_web import NOW, PAYLOAD, TZ, body_of, hook_secret_env, ledger, signed

__all__ = ["hook_secret_env"]  # a fixture

Client = TestClient[Any, Any]

# Random YAML-shaped data: scalars, lists and mappings with keys the loader knows.
KEYS = st.sampled_from(
    ["events", "audiences", "hooks", "defaults", "holidays", "id", "title", "date", "month",
     "lunar", "rrule", "reminders", "before", "after", "on", "off", "work", "send_at",
     "workdays", "audience", "template", "csv", "members", "email", "name", "grace", "vars"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 400), st.text(max_size=12),
    st.sampled_from(["4·15", "12-01..12-07", "3个工作日", "7x", "09:00", "13-40", "start"]),
)  # fmt: skip
TREES = st.recursive(
    SCALARS,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(KEYS, kids, max_size=5)),
    max_leaves=25,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=TREES)
def test_random_config_structures_give_errors_naming_the_file_never_a_traceback(
    tmp_path: Path, data: object
) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({"events": data} if not isinstance(data, dict) else data))
    try:
        load_schedule(tmp_path)
    except ConfigError as exc:
        assert exc.errors
        assert all(line.startswith(str(tmp_path)) for line in exc.errors), exc.errors


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_random_text_files_give_errors_naming_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "fuzz.yaml").write_text(text, encoding="utf-8")
    try:
        load_schedule(tmp_path)
    except ConfigError as exc:
        assert all(str(tmp_path / "fuzz.yaml") in line for line in exc.errors)


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("fazhi@fao.example.com", True),
        ("张三@例子.公司", True),  # internationalised (SMTPUTF8) addresses are valid syntax
        ("no-at-sign.example.com", False),
        ("a@b@example.com", False),
        ("a@example.com\r\nBcc: x@example.com", False),
        ("", False),
    ],
)
def test_addresses_are_validated(address: str, ok: bool) -> None:
    assert (check_address(address) is None) is ok


async def test_an_audience_name_with_a_line_break_cannot_inject_headers(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    write_schedule(
        settings.schedules_dir,
        """\
        audiences:
          staff: [{email: a@example.com, name: "甲\\r\\nBcc: victim@example.com"}]
        events:
          - {id: e, title: T, date: "05-01", reminders: [{on: start}]}
        """,
    )
    async with App(settings) as app:
        with pytest.raises(HeaderError):
            await app.outbox.send_now("e", now=app.clock())
        assert await app.store.list_deliveries() == []


def test_a_huge_csv_with_broken_rows_keeps_the_good_ones(tmp_path: Path) -> None:
    lines = ["email,name"]
    for i in range(20_000):
        lines.append(f"user{i}@example.com,企业{i}" if i % 100 else f"broken-{i},企业{i},extra")
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_schedule(tmp_path, "audiences:\n  big: {csv: big.csv, external: true}\n")
    schedule = load_schedule(tmp_path)
    assert schedule.audiences["big"].size == 19_800
    assert len(schedule.warnings) == 200
    assert schedule.warnings[0].endswith("line 2: wrong number of columns (row skipped)")


async def test_a_read_only_database_is_refused_at_start_with_its_name(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    # Root ignores permission bits, so open the file read-only through SQLite's URI instead.
    path = tmp_path / "ledger.db"
    async with App(make_settings()):
        pass
    settings = make_settings(database_url=f"sqlite:///{path}?mode=ro")
    with pytest.raises(StoreError) as info:
        async with App(settings) as app:
            await app.outbox.send_now("security-day", now=app.clock())
    assert "ledger.db" in str(info.value)


async def test_a_locked_database_gives_a_clear_error_and_loses_nothing(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings()
    async with App(settings) as app:
        blocker = sqlite3.connect(tmp_path / "ledger.db", timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match=r"ledger\.db"):
                await app.outbox.send_now("security-day", now=app.clock())
        finally:
            blocker.rollback()
            blocker.close()
        created, _ = await app.outbox.send_now("security-day", now=app.clock())
        await app.worker.run_until_idle()
        assert created == 2
        assert {r.state for r in await app.store.list_deliveries()} == {State.SENT}


# --- webhook payloads (issue 17, "also seen") -------------------------------------------------

NOTICE_HOOK = """\
hooks:
  - {id: notice, secret_env: NOTIFIER_HOOK_VISIT_REQUEST, template: visit-notice}
"""


@pytest.fixture
async def intake(
    make_settings: MakeSettings, hook_secret_env: None
) -> AsyncIterator[tuple[App, Client]]:
    """A real aiohttp server with the `notice` hook, whose recipients come in `to`."""
    settings = make_settings()
    write_schedule(settings.schedules_dir, NOTICE_HOOK, name="notice.yaml")
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            yield app, client


async def post_raw(client: Client, body: bytes, msg_id: str = "m1") -> tuple[int, Any]:
    resp = await client.post("/hooks/notice", data=body, headers=signed(body, msg_id))
    return resp.status, await resp.json()


def to(name: str, email: str = "a@example.org") -> dict[str, Any]:
    return {**PAYLOAD, "to": [{"email": email, "name": name}]}


@pytest.mark.parametrize("char", ["\v", "\f", "\x1b", "\x7f", "\x85", "\t", "\n", "\0"])
async def test_a_control_character_in_a_to_name_is_a_422_naming_the_field(
    intake: tuple[App, Client], char: str
) -> None:
    app, client = intake
    status, answer = await post_raw(client, body_of(to(f"甲{char}Bcc: x@example.org")))
    assert status == 422, answer
    assert answer["field"] == "to[0].name"
    assert f"U+{ord(char):04X}" in answer["detail"]
    assert await ledger(app.settings) == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**PAYLOAD, "visitor": "张\x1b[31m三"}, "visitor"),  # reaches the Subject
        ({**PAYLOAD, "extra": {"list": ["fine", "bell\x07"]}}, "extra.list[1]"),
        ({**PAYLOAD, "to": ["a@example.org\x0b"]}, "to[0]"),
        ({**PAYLOAD, "to": [{"email": "a@exa\x7fmple.org"}]}, "to[0].email"),
    ],
)
async def test_a_control_character_anywhere_in_the_payload_is_a_422_naming_the_field(
    intake: tuple[App, Client], payload: dict[str, Any], field: str
) -> None:
    app, client = intake
    status, answer = await post_raw(client, body_of({"to": ["a@example.org"], **payload}))
    assert (status, answer["field"]) == (422, field), answer
    assert await ledger(app.settings) == []


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e309", "-1e400"])
async def test_a_number_json_or_a_float_cannot_hold_is_a_422_naming_the_field(
    intake: tuple[App, Client], number: str
) -> None:
    app, client = intake
    body = body_of({**PAYLOAD, "to": ["a@example.org"]})[:-1] + f', "n": [{number}]}}'.encode()
    status, answer = await post_raw(client, body)
    assert (status, answer["field"]) == (422, "n[0]"), answer
    assert number in answer["detail"]
    assert await ledger(app.settings) == []


@pytest.mark.parametrize(
    ("send_at", "status"),
    [
        ("9999-12-31T09:00:00", 422),
        ("2100-01-01T09:00:00+08:00", 422),
        ((datetime.fromtimestamp(NOW, TZ) + timedelta(days=401)).isoformat(), 422),
        ((datetime.fromtimestamp(NOW, TZ) + timedelta(days=399)).isoformat(), 202),
    ],
)
async def test_send_at_more_than_400_days_ahead_is_a_422(
    intake: tuple[App, Client], send_at: str, status: int
) -> None:
    app, client = intake
    payload = {**PAYLOAD, "to": ["a@example.org"], "send_at": send_at}
    got, answer = await post_raw(client, body_of(payload))
    assert got == status, answer
    if status == 422:
        assert answer["field"] == "send_at" and "400 days" in answer["detail"]
    assert len(await ledger(app.settings)) == (status == 202)


@pytest.mark.parametrize("way", ["maildrop", "smtp"])
async def test_an_idn_domain_is_sent_in_its_ascii_form_by_smtp_and_the_mail_drop_alike(
    make_settings: MakeSettings,
    hook_secret_env: None,
    smtp_server: Callable[..., SmtpServer],
    tmp_path: Path,
    way: str,
) -> None:
    server = smtp_server() if way == "smtp" else None
    settings = make_settings(**({"smtp": smtp_settings(server)} if server else {}))
    write_schedule(settings.schedules_dir, NOTICE_HOOK, name="notice.yaml")
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            status, answer = await post_raw(client, body_of(to("甲", "User@例子.公司")))
            assert status == 202, answer
        stats = await app.run_until_idle()
        (row,) = await app.store.list_deliveries()
    assert row.recipient == "User@xn--fsqu00a.xn--55qx5d"
    assert (stats.sent, row.state) == (1, State.SENT)
    if server is not None:
        (message,) = server.sink.messages
        assert server.sink.recipients() == [message["To"]]
    else:
        (path,) = (tmp_path / "mail" / "new").iterdir()
        message = message_from_bytes(path.read_bytes(), policy=default_policy)
    assert parseaddr(str(message["To"]))[1] == "User@xn--fsqu00a.xn--55qx5d"


async def test_a_non_ascii_local_part_is_a_422_saying_it_needs_smtputf8(
    intake: tuple[App, Client],
) -> None:
    app, client = intake
    status, answer = await post_raw(client, body_of({**PAYLOAD, "to": ["张三@例子.公司"]}))
    assert (status, answer["error"], answer["field"]) == (422, "unsupported address", "to[0]")
    assert "SMTPUTF8" in answer["detail"]
    assert await ledger(app.settings) == []

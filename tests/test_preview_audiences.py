"""Previews of a reminder with several audiences (`audience: [staff, group]`, the group a chat
channel): `/api/preview` and `notifier preview` take any of the reminder's audiences, default
to the first, say which one they rendered for, and refuse one the reminder does not go to,
naming those it does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result

from notifier.cli.main import main
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings, write_schedule
from tests.test_channels import CHAT_SCHEDULE, WECOM_KEY
from tests.test_web import ADMIN, NOW, STAFF, ledger

Client = TestClient[Any, Any]
ROBOT_URL = f"http://127.0.0.1:9/cgi-bin/webhook/send?key={WECOM_KEY}"  # never posted to
PARTNER = "partner@corp.example.com"
# conftest's staff and security-day, the reminders going to [staff, group]; and an audience
# that no reminder of the event names.
SCHEDULE = (
    CHAT_SCHEDULE.replace("CHANNEL", "fazhi-wecom")
    .replace("TYPE", "wecom")
    .replace("    secret_env: NOTIFIER_TEST_SECRET\n", "")
    .replace("audiences:\n", f"audiences:\n  partners:\n    - {{email: {PARTNER}, name: 伙伴}}\n")
)


@pytest.fixture
def chat_calendar(config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The schedule above in place of conftest's (same file)."""
    monkeypatch.setenv("NOTIFIER_TEST_URL", ROBOT_URL)
    return write_schedule(config_dirs[0], SCHEDULE)


@pytest.fixture
async def client(
    chat_calendar: Path, make_settings: MakeSettings
) -> AsyncIterator[tuple[App, Client]]:
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            yield app, c


async def preview(c: Client, **fields: str) -> tuple[int, dict[str, Any]]:
    resp = await c.post(
        "/api/preview",
        headers=ADMIN,
        json={"event": "security-day", "reminder": "on-start", **fields},
    )
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def test_without_an_audience_the_preview_is_the_first_audiences_and_says_so(
    client: tuple[App, Client],
) -> None:
    _, c = client
    status, body = await preview(c)
    assert status == 200
    assert (body["audience"], body["audiences"]) == ("staff", ["staff", "group"])
    assert (body["channel"], body["recipient"], body["body"]) == ("email", STAFF[0], None)
    assert body["text"].startswith("法治处：") and body["html"].startswith("<p>法治处")


async def test_the_chat_group_of_the_list_previews_as_its_posted_message(
    client: tuple[App, Client],
) -> None:
    app, c = client
    status, body = await preview(c, audience="group")
    assert status == 200
    assert (body["audience"], body["channel"], body["recipient"]) == (
        "group",
        "fazhi-wecom",
        "fazhi-wecom",
    )
    assert body["subject"] == "【提醒】全民国家安全教育日（2026年4月15日）"
    assert body["body"]["msgtype"] == "markdown"
    assert body["text"] == body["body"]["markdown"]["content"]
    assert body["text"].startswith("**【提醒】全民国家安全教育日") and body["html"] is None
    assert WECOM_KEY not in str(body)
    assert await ledger(app.settings) == []  # nothing sent, nothing stored


async def test_a_recipient_is_looked_for_in_the_named_audience(
    client: tuple[App, Client],
) -> None:
    _, c = client
    status, body = await preview(c, audience="staff", recipient=STAFF[1])
    assert status == 200 and body["recipient"] == STAFF[1] and body["text"].startswith("办公室：")
    status, body = await preview(c, audience="group", recipient=STAFF[1])
    assert status == 422
    assert body["detail"].startswith(f"recipient: '{STAFF[1]}' is not in audience 'group'")
    assert "chat group" in body["detail"]


async def test_an_address_in_no_audience_of_the_list_is_not_answered_by_the_group(
    client: tuple[App, Client],
) -> None:
    _, c = client
    status, body = await preview(c, recipient="stranger@example.com")
    assert status == 422
    assert (
        "'stranger@example.com' is not in any of the audiences 'staff', 'group'" in (body["detail"])
    )
    assert body["audiences"] == ["staff", "group"]


@pytest.mark.parametrize(
    ("audience", "phrase"),
    [
        ("partners", "audience 'partners' is not one of reminder 'on-start''s audiences"),
        ("nobody", "unknown audience 'nobody'"),
    ],
)
async def test_an_audience_the_reminder_does_not_go_to_is_a_422_naming_the_allowed(
    client: tuple[App, Client], audience: str, phrase: str
) -> None:
    _, c = client
    status, body = await preview(c, audience=audience)
    assert status == 422
    assert body["error"] == "invalid field"
    assert body["detail"].startswith("audience: ") and phrase in body["detail"]
    assert "staff, group" in body["detail"]
    assert body["audiences"] == ["staff", "group"]


@pytest.mark.parametrize(
    ("payload", "status", "detail"),
    [
        ({"audience": ""}, 422, "audience: String should have at least 1 character"),
        ({"audience": 5}, 422, "audience: Input should be a valid string"),
        ({"audience": "x" * 201}, 422, "audience: String should have at most 200 characters"),
    ],
)
async def test_a_malformed_audience_is_a_4xx_json_error(
    client: tuple[App, Client], payload: dict[str, object], status: int, detail: str
) -> None:
    _, c = client
    resp = await c.post("/api/preview", headers=ADMIN, json={"event": "security-day", **payload})
    assert resp.status == status
    assert (await resp.json())["detail"].startswith(detail)


async def test_a_manual_notice_offers_the_audiences_of_the_events_first_reminder(
    client: tuple[App, Client],
) -> None:
    _, c = client
    resp = await c.post(
        "/api/preview", headers=ADMIN, json={"event": "security-day", "audience": "group"}
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["audience"], body["channel"]) == ("group", "fazhi-wecom")


def test_the_document_describes_the_audience_choice() -> None:
    from notifier.web.openapi import openapi_spec

    schemas = openapi_spec()["components"]["schemas"]
    assert "audience" in schemas["PreviewRequest"]["properties"]
    assert {"audience", "audiences", "channel"} <= set(schemas["Preview"]["required"])


# --- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def cli(
    tmp_path: Path,
    chat_calendar: Path,
    config_dirs: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:
    _, templates = config_dirs
    monkeypatch.chdir(tmp_path)
    env = {
        "NOTIFIER_SCHEDULES_DIR": str(chat_calendar.parent),
        "NOTIFIER_TEMPLATES_DIR": str(templates),
        "NOTIFIER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NOTIFIER_MAIL_DROP_DIR": str(tmp_path / "mail"),
        "NOTIFIER_MAIL_FROM": "notifier@fao.example.com",
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def test_the_cli_previews_either_audience_of_the_list_and_names_it(
    cli: Callable[..., Result],
) -> None:
    staff = cli("preview", "security-day", "--reminder", "on-start", "--audience", "staff")
    assert staff.exit_code == 0, staff.output
    assert staff.output.startswith("受众 Audience: staff\n")
    assert "To: 法治处 <fazhi@fao.example.com>" in staff.output
    group = cli("preview", "security-day", "--reminder", "on-start", "--audience", "group")
    assert group.exit_code == 0, group.output
    assert group.output.startswith("受众 Audience: group\n渠道 channel: fazhi-wecom")
    default = cli("preview", "security-day", "--reminder", "on-start")
    assert default.output.startswith("受众 Audience: staff\n")


def test_the_cli_refuses_an_audience_the_reminder_does_not_go_to(
    cli: Callable[..., Result],
) -> None:
    result = cli("preview", "security-day", "--reminder", "on-start", "--audience", "partners")
    assert result.exit_code == 1
    assert "受众 'partners' 不在提醒 'on-start' 的受众中，可选：staff, group" in result.output
    assert "audience 'partners' is not one of reminder 'on-start''s audiences" in result.output

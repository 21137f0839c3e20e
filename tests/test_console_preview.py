"""The event page's preview for a reminder that goes to several audiences, one a chat group:
staff choose the audience and see the group's message as it will read, not its JSON as mail."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from notifier.service import App
from notifier.web import create_web_app
from tests.console_fixtures import ADMIN_TOKEN, NOW, console_settings, hook_secret_env

__all__ = ["hook_secret_env"]

Client = TestClient[Any, Any]
CHAT = """\
channels:
  fazhi-wecom:
    type: wecom
    url_env: NOTIFIER_TEST_WECOM_URL
audiences:
  fazhi-group: {chat: fazhi-wecom}
events:
  - id: law-day
    title: 宪法宣传周
    date: "12-01..12-07"
    audience: [staff, fazhi-group]
    reminders:
      - before: 3 days
"""


@pytest.fixture
async def client(
    tmp_path: Path, hook_secret_env: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Client]:
    monkeypatch.setenv("NOTIFIER_TEST_WECOM_URL", "http://127.0.0.1:9/send?key=SECRET-KEY-1")
    settings = console_settings(tmp_path)
    (settings.schedules_dir / "chat.yaml").write_text(CHAT, encoding="utf-8")
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            page = await (await c.get("/")).text()
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf
            data = {"csrf": csrf.group(1), "token": ADMIN_TOKEN, "next": "/"}
            assert (await c.post("/signin", data=data)).status == 200
            yield c


async def test_the_first_audience_is_previewed_as_mail_and_both_can_be_chosen(
    client: Client,
) -> None:
    body = await (await client.get("/events/law-day")).text()
    assert '<select name="audience">' in body
    assert '<option value="fazhi-group">' in body
    assert "fazhi@fao.example.com" in body and "主题 Subject:" in body


async def test_the_chat_group_shows_the_text_the_group_reads_and_hides_the_robot_key(
    client: Client,
) -> None:
    resp = await client.get("/events/law-day", params={"audience": "fazhi-group"})
    body = await resp.text()
    assert resp.status == 200
    assert "群聊 Chat group:" in body and "fazhi-wecom" in body
    (shown,) = re.findall(r'<pre class="text chat-text">(.*?)</pre>', body, re.S)
    assert "宪法宣传周" in html.unescape(shown) and '"msgtype"' not in html.unescape(shown)
    assert "主题 Subject:" not in body and "<iframe" not in body
    assert "SECRET-KEY-1" not in body


async def test_an_audience_the_reminder_does_not_go_to_is_a_422_page(client: Client) -> None:
    resp = await client.get("/events/law-day", params={"audience": "enterprises"})
    assert resp.status == 422 and resp.content_type == "text/html"
    assert "fazhi-group" in await resp.text()  # names the audiences it may be

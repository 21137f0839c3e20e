"""Two instances of the console on one schedules directory and one PostgreSQL database: an edit
made on one shows on the other once it reloads (as its watcher does), and both read the same
history; a hand edit that both notice is recorded once."""

from __future__ import annotations

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
pytestmark = pytest.mark.postgres

Client = TestClient[Any, Any]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match
    return match.group(1)


async def signed_in(c: Client) -> str:
    page = await (await c.get("/")).text()
    resp = await c.post("/signin", data={"csrf": csrf_of(page), "token": ADMIN_TOKEN})
    assert resp.status == 200
    return csrf_of(await (await c.get("/events")).text())


@pytest.fixture
async def two(
    tmp_path: Path, pg_url: str, hook_secret_env: None
) -> AsyncIterator[tuple[App, Client, App, Client]]:
    settings = console_settings(tmp_path, database_url=pg_url)
    async with App(settings, clock=lambda: NOW) as a, App(settings, clock=lambda: NOW) as b:
        async with (
            TestClient(TestServer(create_web_app(a))) as ca,
            TestClient(TestServer(create_web_app(b))) as cb,
        ):
            yield a, ca, b, cb


async def test_an_edit_on_one_instance_shows_on_the_other_with_the_same_history(
    two: tuple[App, Client, App, Client],
) -> None:
    _, ca, b, cb = two
    csrf = await signed_in(ca)
    page = await (await ca.get("/events/security-day/edit")).text()
    base = re.search(r'name="base" value="([^"]*)"', page)
    assert base
    form = {
        "csrf": csrf,
        "base": base.group(1),
        "id": "security-day",
        "title": "国家安全教育日（新）",
        "rule": "date",
        "date": "4·15",
        "r0_kind": "on",
        "r0_value": "start",
        "do": "save",
    }
    resp = await ca.post("/events/security-day/edit", data=form, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    assert await b.reload_now()  # what b's watcher does when the file changes
    await signed_in(cb)
    page = await (await cb.get("/events/security-day")).text()
    assert "国家安全教育日（新）" in page
    history = await b.editor.history(event="security-day")
    # b saw a's save already recorded: no "edited outside the console" for it.
    assert [v.action for v in history] == ["edit", "initial"]
    assert "编辑 edited" in await (await cb.get("/events/security-day/history")).text()


async def test_a_hand_edit_noticed_by_both_instances_is_recorded_once(
    two: tuple[App, Client, App, Client],
) -> None:
    a, _, b, _ = two
    path = a.settings.schedules_dir / "main.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("知识产权宣传周", "知识产权周"))
    assert await a.reload_now() and await b.reload_now()
    history = await a.editor.history(file="main.yaml")
    assert [v.action for v in history] == ["outside", "initial"]
    assert "+    title: 知识产权周" in history[0].diff

"""配置 → 导入放假安排: staff paste the State Council's notice, see what it moves, save it.

Over plain HTTP against a real App on a real SQLite file; the browser test of the same flow is
in test_console_browser.py. The 2027 notice here is made up (the real one is not out yet).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from notifier.compose.admin_notices import ADMIN_TEMPLATES
from notifier.compose.message import message_parts
from notifier.service import App
from notifier.web import create_web_app
from notifier.web.console import MAX_FORM_BYTES
from tests.conftest import ROOT
from tests.console_fixtures import (
    ADMIN_TOKEN,
    NOW,
    STAFF,
    VIEWER_TOKEN,
    console_settings,
    hook_secret_env,
)

__all__ = ["hook_secret_env"]

Client = TestClient[Any, Any]
NOTICE_2027 = (Path(__file__).parent / "fixtures" / "notices" / "2027-made-up.txt").read_text(
    encoding="utf-8"
)


@pytest.fixture
async def client(tmp_path: Path, hook_secret_env: None) -> AsyncIterator[tuple[App, Client]]:
    async with App(console_settings(tmp_path), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            yield app, c


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def signed_in(c: Client, token: str = ADMIN_TOKEN) -> str:
    """Sign in; the session's CSRF token."""
    page = await (await c.get("/")).text()
    resp = await c.post("/signin", data={"csrf": csrf_of(page), "token": token, "next": "/"})
    assert resp.status == 200
    return csrf_of(await (await c.get("/config/holidays")).text())


async def test_a_pasted_notice_shows_its_table_and_the_sends_it_moves_before_saving(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    resp = await c.post("/config/holidays/preview", data={"csrf": csrf, "notice": NOTICE_2027})
    body = await resp.text()
    assert resp.status == 200
    assert "2027年放假安排" in body and "春节" in body and "2月5日–2月11日（7天）" in body
    # 春节 2027 is 02-06: "5 workdays before" was 01-29 on the guess (02-05, 除夕, is off by
    # law); the notice makes Sunday 01-31 a workday, so it is 01-31.
    assert re.search(r"春节.*?2027-01-29.*?2027-01-31", body, re.S)
    assert '<span class="moved-count">1</span>' in body
    assert "schedules/holidays-2027.yaml" in body
    # Nothing is saved by a preview.
    assert not (app.settings.schedules_dir / "holidays-2027.yaml").exists()
    assert not app.schedule.calendar.has_official_data(2027)


def tell_the_staff(app: App) -> None:
    """`admins: staff`, with the shipped admin templates: moved sends are announced."""
    templates = app.settings.templates_dir
    for name in ADMIN_TEMPLATES:
        shutil.copytree(ROOT / "templates" / name, templates / name, dirs_exist_ok=True)
    shutil.copy(ROOT / "templates" / "_base.html", templates / "_base.html")
    (app.settings.schedules_dir / "admins.yaml").write_text("admins: staff\n", encoding="utf-8")
    assert app.reload()


async def test_saving_writes_the_table_loads_it_at_once_and_is_audited(
    client: tuple[App, Client],
) -> None:
    app, c = client
    tell_the_staff(app)
    await app.notices.workdays_changed(NOW)  # the snapshot a running service has taken
    csrf = await signed_in(c)
    resp = await c.post(
        "/config/holidays/save",
        data={"csrf": csrf, "notice": NOTICE_2027},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/config?notice=holidays-imported&year=2027"
    saved = (app.settings.schedules_dir / "holidays-2027.yaml").read_text(encoding="utf-8")
    assert '"2027-02-05..2027-02-11"' in saved and '"2027-02-20"' in saved
    calendar = app.schedule.calendar
    assert calendar.has_official_data(2027)
    assert not calendar.is_workday(date(2027, 2, 8)) and calendar.is_workday(date(2027, 2, 20))
    # The admins are told at once which sends moved (the spring festival reminder).
    rows = [r for r in await app.store.list_deliveries() if r.reminder_id == "admin-moved"]
    assert sorted(r.recipient for r in rows) == sorted(STAFF)
    subject, text, _ = message_parts(rows[0].message)
    assert "1项提醒" in subject and "2027-01-29 → 2027-01-31" in text
    page = await (await c.get(resp.headers["Location"])).text()
    assert "已导入并载入 2027 年放假安排" in page and "import_holidays" in page
    # Saving again replaces the file's table: still one table for the year, no error.
    csrf = csrf_of(page)
    again = await c.post("/config/holidays/save", data={"csrf": csrf, "notice": NOTICE_2027})
    assert again.status == 200 and app.config_errors == []


async def test_a_notice_copied_with_its_web_page_around_it_fits_the_form(
    client: tuple[App, Client],
) -> None:
    """The page's forms are multipart: a Chinese character costs 3 bytes, not 9 (%XX%XX%XX),
    so a copy with the news site's headers and "相关阅读" fits the 16 KB form limit."""
    _, c = client
    csrf = await signed_in(c)
    page = await (await c.get("/config/holidays")).text()
    assert 'enctype="multipart/form-data"' in page
    junk = "相关阅读：各地迎新春文化活动精彩纷呈，铁路部门增开临时旅客列车。\n" * 60
    text = "来源：新华网\n" + NOTICE_2027 + "\n" + junk
    assert len(quote(text)) > MAX_FORM_BYTES > len(text.encode())  # fits only as multipart
    form = FormData({"csrf": csrf, "notice": text}, default_to_multipart=True)
    resp = await c.post("/config/holidays/preview", data=form)
    assert resp.status == 200 and "2027年放假安排" in await resp.text()


async def test_text_that_is_not_a_notice_is_shown_again_with_the_reason(
    client: tuple[App, Client],
) -> None:
    _, c = client
    csrf = await signed_in(c)
    resp = await c.post(
        "/config/holidays/preview", data={"csrf": csrf, "notice": "明天开会，请准时参加。"}
    )
    body = await resp.text()
    assert resp.status == 422 and resp.content_type == "text/html"
    assert "不是国务院办公厅节假日安排通知" in body
    assert "明天开会，请准时参加。</textarea>" in body  # what was pasted is kept
    wrong_day = NOTICE_2027.replace("1月1日（周五）", "1月1日（周一）")
    resp = await c.post("/config/holidays/preview", data={"csrf": csrf, "notice": wrong_day})
    assert resp.status == 422 and "周一" in await resp.text()


async def test_a_viewer_sees_the_page_but_cannot_preview_or_save(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c, VIEWER_TOKEN)
    page = await (await c.get("/config/holidays")).text()
    assert "只读账号不能导入" in page and "<textarea" not in page
    for action in ("preview", "save"):
        resp = await c.post(
            f"/config/holidays/{action}", data={"csrf": csrf, "notice": NOTICE_2027}
        )
        assert resp.status == 403
    assert not (app.settings.schedules_dir / "holidays-2027.yaml").exists()


async def test_a_year_whose_table_is_in_another_file_is_not_given_twice(
    client: tuple[App, Client],
) -> None:
    app, c = client
    other = app.settings.schedules_dir / "extra.yaml"
    other.write_text('holidays:\n  "2027":\n    off: ["2027-01-01"]\n', encoding="utf-8")
    assert app.reload()
    csrf = await signed_in(c)
    preview = await c.post("/config/holidays/preview", data={"csrf": csrf, "notice": NOTICE_2027})
    assert "请先删除该表再导入" in await preview.text()
    resp = await c.post("/config/holidays/save", data={"csrf": csrf, "notice": NOTICE_2027})
    assert resp.status == 409
    assert not (app.settings.schedules_dir / "holidays-2027.yaml").exists()


async def test_a_save_the_check_refuses_is_taken_back_and_the_running_config_stays(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    (app.settings.schedules_dir / "broken.yaml").write_text("events: [\n", encoding="utf-8")
    resp = await c.post("/config/holidays/save", data={"csrf": csrf, "notice": NOTICE_2027})
    body = await resp.text()
    assert resp.status == 422 and "检查未通过，未保存" in body and "broken.yaml" in body
    assert not (app.settings.schedules_dir / "holidays-2027.yaml").exists()
    assert not app.schedule.calendar.has_official_data(2027)  # the last good config runs


def test_two_files_with_a_table_for_one_year_are_an_error_naming_both(tmp_path: Path) -> None:
    from notifier.errors import ConfigError
    from notifier.schedule.load import load_schedule

    (tmp_path / "a.yaml").write_text('holidays: {"2027": {off: ["2027-01-01"]}}\n', "utf-8")
    (tmp_path / "b.yaml").write_text('holidays: {"2027": {off: ["2027-01-02"]}}\n', "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_schedule(tmp_path)
    (error,) = caught.value.errors
    assert error.startswith(f"{tmp_path / 'b.yaml'}: holidays.2027: the 2027 table is given again")
    assert str(tmp_path / "a.yaml") in error


@pytest.mark.parametrize("year", ["9999", "0001"])
async def test_a_year_outside_2000_to_2100_in_the_text_is_a_422_page_and_nothing_is_saved(
    client: tuple[App, Client], year: str
) -> None:
    app, c = client
    csrf = await signed_in(c)
    text = NOTICE_2027.replace("2027年", f"{year}年")
    text = re.sub(r"（周.）", "", text)  # no weekday check stops it first
    for action in ("preview", "save"):
        resp = await c.post(
            f"/config/holidays/{action}",
            data={"csrf": csrf, "notice": text},
            allow_redirects=False,
        )
        body = await resp.text()
        assert resp.status == 422 and resp.content_type == "text/html", (action, body[:300])
        assert f"the year {int(year)} is outside 2000..2100" in body
    assert sorted(p.name for p in app.settings.schedules_dir.glob("holidays-*")) == []


async def test_a_holidays_file_holding_other_content_is_not_overwritten(
    client: tuple[App, Client],
) -> None:
    app, c = client
    path = app.settings.schedules_dir / "holidays-2027.yaml"
    mine = (
        "events:\n"
        "  - {id: kept-event, title: 保留的事件, date: '05-04', reminders: [{before: 3 days}]}\n"
    )
    path.write_text(mine, encoding="utf-8")
    assert app.reload()
    csrf = await signed_in(c)
    preview = await c.post("/config/holidays/preview", data={"csrf": csrf, "notice": NOTICE_2027})
    page = await preview.text()
    assert preview.status == 200
    assert f"{path} 已存在且含有 2027 年节假日表以外的内容，未覆盖" in page
    assert "/config/holidays/save" not in page  # no save button for a save that is refused
    resp = await c.post("/config/holidays/save", data={"csrf": csrf, "notice": NOTICE_2027})
    body = await resp.text()
    assert resp.status == 409 and "未覆盖" in body and str(path) in body
    assert path.read_text(encoding="utf-8") == mine
    assert "kept-event" in app.schedule.events
    assert not app.schedule.calendar.has_official_data(2027)


async def test_a_symlink_at_the_holidays_file_is_never_written_through(
    client: tuple[App, Client], tmp_path: Path
) -> None:
    app, c = client
    outside = tmp_path / "outside" / "other-system.yaml"
    outside.parent.mkdir()
    outside.write_text("# 其他系统的文件 another system's file\n", encoding="utf-8")
    link = app.settings.schedules_dir / "holidays-2027.yaml"
    link.symlink_to(outside)
    csrf = await signed_in(c)
    resp = await c.post("/config/holidays/save", data={"csrf": csrf, "notice": NOTICE_2027})
    body = await resp.text()
    assert resp.status == 409 and "是符号链接，不写入" in body
    assert outside.read_text(encoding="utf-8") == "# 其他系统的文件 another system's file\n"
    assert link.is_symlink()


async def test_a_check_that_meets_a_gbk_template_takes_the_file_back_with_a_422_page(
    client: tuple[App, Client],
) -> None:
    """Whatever the check raises, the saved file is removed again and the page says why."""
    app, c = client
    body_txt = app.settings.templates_dir / "reminder" / "body.txt"
    body_txt.write_bytes("请于{{ event.start }}前报送。".encode("gbk"))
    csrf = await signed_in(c)
    resp = await c.post("/config/holidays/save", data={"csrf": csrf, "notice": NOTICE_2027})
    body = await resp.text()
    assert resp.status == 422 and resp.content_type == "text/html"
    assert "未保存" in body
    assert not (app.settings.schedules_dir / "holidays-2027.yaml").exists()
    assert not app.schedule.calendar.has_official_data(2027)  # the last good config runs

"""事件 → 新建 / 编辑 / 删除 over plain HTTP, against a real App on a real SQLite file: the
preview before saving, the file kept as written, conflicts, roles and every refusal. The same
flows in Chromium are in test_console_browser.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from notifier.ledger.console import NewVersion
from notifier.schedule.edit import file_hash, find_event, replaced
from notifier.schedule.files import load_yaml_text
from notifier.service import App
from notifier.web import create_web_app
from notifier.web.console_edit import event_from_form, form_from_event
from tests.conftest import workbook_bytes
from tests.console_fixtures import (
    ADMIN_TOKEN,
    EDITOR_TOKEN,
    NOW,
    VIEWER_TOKEN,
    console_settings,
    hook_secret_env,
)

__all__ = ["hook_secret_env"]

Client = TestClient[Any, Any]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# A hand-written file with comments, quoting and a key the console does not edit.
COMMENTED = """\
# 法治处的讲座安排（手写，请保留本注释）
# Lectures of the law office (hand-written: keep this comment).

events:
  # 每年一次的宪法讲座
  - id: lecture
    title: 宪法讲座
    date: "9·10"   # 教师节当天 / on Teachers' Day
    vars:
      room: 三楼会议室
    reminders:
      - before: 5 days
        # 提前一周改为提前五天（2025年会议决定）
        replaces: before-1w
      - on: start
"""


@pytest.fixture
async def client(tmp_path: Path, hook_secret_env: None) -> AsyncIterator[tuple[App, Client]]:
    settings = console_settings(tmp_path)
    (settings.schedules_dir / "lectures.yaml").write_text(COMMENTED, encoding="utf-8")
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            yield app, c


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def base_of(html: str) -> str:
    match = re.search(r'name="base" value="([^"]*)"', html)
    assert match, "no base field in the page"
    return match.group(1)


async def signed_in(c: Client, token: str = ADMIN_TOKEN) -> str:
    page = await (await c.get("/")).text()
    resp = await c.post("/signin", data={"csrf": csrf_of(page), "token": token, "next": "/"})
    assert resp.status == 200
    return csrf_of(await (await c.get("/events")).text())


def new_event(csrf: str, **fields: str) -> dict[str, str]:
    """A form for a new event: 普法讲座 on 4月6日 (in the 清明 holiday of 2026), one reminder
    on the day."""
    data = {
        "csrf": csrf,
        "id": "law-lecture",
        "title": "普法讲座",
        "rule": "date",
        "date": "4月6日",
        "r0_kind": "on",
        "r0_value": "start",
        "do": "preview",
    }
    data.update(fields)
    return data


async def test_a_new_events_preview_shows_the_day_a_holiday_moves_it_to_and_writes_nothing(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    resp = await c.post("/events/new", data=new_event(csrf))
    body = await resp.text()
    assert resp.status == 200, body
    assert "检查通过" in body
    # 2026-04-06 is in the 清明 holiday (04-04..06): the send moves to Friday 04-03.
    assert "2026-04-03 09:00" in body and "4月4日至6日清明节放假，提前至4月3日" in body
    # 2027 has no official data yet: its send is provisional.
    assert re.search(r"2027-04-0\d 09:00 <span class=\"chip provisional\">", body)
    assert '<tr class="change-added">' in body
    assert not (app.settings.schedules_dir / "console.yaml").exists()
    assert "law-lecture" not in app.schedule.events


async def test_saving_a_new_event_writes_console_yaml_reloads_and_is_audited(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    resp = await c.post("/events/new", data=new_event(csrf, do="save"), allow_redirects=False)
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/events/law-lecture?notice=saved"
    saved = (app.settings.schedules_dir / "console.yaml").read_text(encoding="utf-8")
    data = load_yaml_text(saved)
    assert data["events"] == [
        {"id": "law-lecture", "title": "普法讲座", "date": "4月6日", "reminders": [{"on": "start"}]}
    ]
    assert app.schedule.events["law-lecture"].title == "普法讲座"
    page = await (await c.get(resp.headers["Location"])).text()
    assert "已保存" in page
    entries = await app.console.audit_entries(limit=5)
    assert any(e.action == "create_event" and e.target == "event:law-lecture" for e in entries)


def edit_form(csrf: str, base: str, title: str) -> dict[str, str]:
    """The form of the `lecture` event (COMMENTED) as the page posts it, saving `title`."""
    return {
        "csrf": csrf,
        "base": base,
        "id": "lecture",
        "title": title,
        "rule": "date",
        "date": "9·10",
        "vars": "room: 三楼会议室\n",
        "r0_kind": "before",
        "r0_value": "5 days",
        "r1_kind": "on",
        "r1_value": "start",
        "do": "save",
    }


async def test_editing_an_event_keeps_the_files_comments_order_and_other_keys(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    page = await (await c.get("/events/lecture/edit")).text()
    assert 'value="宪法讲座"' in page and "9·10" in page
    form = edit_form(csrf, base_of(page), "宪法专题讲座")
    resp = await c.post("/events/lecture/edit", data=form, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    after = (app.settings.schedules_dir / "lectures.yaml").read_text(encoding="utf-8")
    # One line changed; every comment, the quoting and `replaces:` are as they were.
    assert after == COMMENTED.replace("title: 宪法讲座", "title: 宪法专题讲座")
    assert app.schedule.events["lecture"].title == "宪法专题讲座"


async def test_a_bad_date_is_shown_next_to_its_field_in_checks_words_and_not_saved(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    resp = await c.post("/events/new", data=new_event(csrf, date="13月45日", do="save"))
    body = await resp.text()
    assert resp.status == 422
    match = re.search(r'<p class="bad field-error" id="e-date" role="alert">([^<]+)</p>', body)
    assert match, body
    assert "console.yaml: events[0].date:" in match.group(1)
    assert "13月45日" in match.group(1)
    assert not (app.settings.schedules_dir / "console.yaml").exists()
    # A reminder's fault is shown by its row.
    resp = await c.post("/events/new", data=new_event(csrf, r0_kind="before", r0_value="7x"))
    body = await resp.text()
    assert resp.status == 422 and 'id="e-r0_value"' in body and "events[0].reminders[0]" in body


async def test_a_second_save_over_a_changed_event_is_refused_with_what_changed(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    page = await (await c.get("/events/lecture/edit")).text()
    base = base_of(page)
    path = app.settings.schedules_dir / "lectures.yaml"
    # Someone else changes the event meanwhile (here by hand).
    path.write_text(COMMENTED.replace('"9·10"', '"9·11"'), encoding="utf-8")
    form = {
        "csrf": csrf,
        "base": base,
        "id": "lecture",
        "title": "我的标题",
        "rule": "date",
        "date": "9·10",
        "r0_kind": "on",
        "r0_value": "start",
        "do": "save",
    }
    resp = await c.post("/events/lecture/edit", data=form)
    body = await resp.text()
    assert resp.status == 409
    assert "-date: 9·10" in body and "+date: 9·11" in body
    assert path.read_text(encoding="utf-8") == COMMENTED.replace('"9·10"', '"9·11"')


async def test_deleting_shows_the_sends_removed_then_removes_the_event_from_its_file(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    page = await (await c.get("/events/lecture/delete")).text()
    assert '<tr class="change-removed">' in page and "2026-09-10 09:00" in page
    resp = await c.post(
        "/events/lecture/delete", data={"csrf": csrf, "base": base_of(page)}, allow_redirects=False
    )
    assert resp.status == 303
    after = (app.settings.schedules_dir / "lectures.yaml").read_text(encoding="utf-8")
    assert "lecture" not in app.schedule.events and "id: lecture" not in after
    assert after.startswith("# 法治处的讲座安排（手写，请保留本注释）")


async def test_a_viewer_sees_no_edit_buttons_and_every_edit_post_is_403(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c, VIEWER_TOKEN)
    assert "新建事件" not in await (await c.get("/events")).text()
    page = await (await c.get("/events/lecture")).text()
    assert "/events/lecture/edit" not in page and "/events/lecture/delete" not in page
    before = (app.settings.schedules_dir / "lectures.yaml").read_text(encoding="utf-8")
    for path, data in (
        ("/events/new", new_event(csrf, do="save")),
        ("/events/new", new_event(csrf)),
        ("/events/lecture/edit", new_event(csrf, id="lecture", do="save")),
        ("/events/lecture/delete", {"csrf": csrf}),
    ):
        resp = await c.post(path, data=data)
        assert resp.status == 403, path
    assert (app.settings.schedules_dir / "lectures.yaml").read_text(encoding="utf-8") == before
    assert not (app.settings.schedules_dir / "console.yaml").exists()


async def test_an_editor_edits_events_but_cannot_send_retry_import_or_read_the_audit_log(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c, EDITOR_TOKEN)
    events = await (await c.get("/events")).text()
    assert "新建事件" in events and "编辑者 editor" in events
    resp = await c.post("/events/new", data=new_event(csrf, do="save"), allow_redirects=False)
    assert resp.status == 303
    assert "law-lecture" in app.schedule.events
    for path, data in (
        ("/events/lecture/send", {"csrf": csrf}),
        ("/deliveries/1/retry", {"csrf": csrf}),
        ("/deliveries/1/resend", {"csrf": csrf}),
        ("/config/holidays/preview", {"csrf": csrf, "notice": "x"}),
        ("/config/holidays/save", {"csrf": csrf, "notice": "x"}),
        ("/audiences/resubscribe", {"csrf": csrf, "email": "a@b.example"}),
    ):
        resp = await c.post(path, data=data)
        assert resp.status == 403, path
    assert (await c.get("/audit")).status == 403
    config = await (await c.get("/config")).text()
    assert "审计日志" not in config and "create_event" not in config
    entries = await app.console.audit_entries(limit=5)
    assert any(e.action == "create_event" and e.role == "editor" for e in entries)


async def test_edit_refusals_are_html_pages_never_500(client: tuple[App, Client]) -> None:
    app, c = client
    csrf = await signed_in(c)
    # An unknown event.
    assert (await c.get("/events/nope/edit")).status == 404
    assert (await c.get("/events/nope/delete")).status == 404
    resp = await c.post("/events/nope/edit", data=new_event(csrf, id="nope", do="save"))
    assert resp.status == 409 and resp.content_type == "text/html"
    # A file outside the schedules directory, a file that is not YAML, a link.
    for name in ("../outside.yaml", "notes.txt"):
        resp = await c.post("/events/new", data=new_event(csrf, file=name, do="save"))
        assert resp.status == 409 and resp.content_type == "text/html", name
    link = app.settings.schedules_dir / "linked.yaml"
    link.symlink_to(app.settings.schedules_dir / "lectures.yaml")
    resp = await c.post("/events/new", data=new_event(csrf, file="linked.yaml", do="save"))
    assert resp.status == 409 and "link" in await resp.text()
    # vars that are not a mapping; an id already taken; no CSRF token.
    resp = await c.post("/events/new", data=new_event(csrf, vars="- a\n- b\n"))
    assert resp.status == 422 and 'id="e-vars"' in await resp.text()
    resp = await c.post("/events/new", data=new_event(csrf, id="lecture", do="save"))
    assert resp.status == 422 and "defined again" in await resp.text()
    resp = await c.post("/events/new", data={**new_event(csrf, do="save"), "csrf": "x"})
    assert resp.status == 403
    assert not (app.settings.schedules_dir / "console.yaml").exists()


# --- versions (issue 22, part 3) ---


async def test_every_console_save_is_a_version_with_who_when_which_file_and_the_diff(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c, EDITOR_TOKEN)
    page = await (await c.get("/events/lecture/edit")).text()
    resp = await c.post("/events/lecture/edit", data=edit_form(csrf, base_of(page), "新标题"))
    assert resp.status == 200  # followed to the event page
    history = await (await c.get("/events/lecture/history")).text()
    assert "编辑 edited" in history and "editor" in history and "lectures.yaml" in history
    versions = await app.editor.history(event="lecture")
    assert [v.action for v in versions] == ["edit", "initial"]
    latest = versions[0]
    assert latest.role == "editor" and latest.file == "lectures.yaml" and latest.at == NOW
    assert "-    title: 宪法讲座\n+    title: 新标题\n" in latest.diff
    page = await (await c.get(f"/history/{latest.id}")).text()
    assert "+    title: 新标题" in page and "恢复此版本" in page
    file_page = await (await c.get("/history?file=lectures.yaml")).text()
    assert file_page.count('class="version-') == 2


async def test_a_hand_edit_is_noticed_at_reload_as_edited_outside_the_console_with_its_diff(
    client: tuple[App, Client],
) -> None:
    app, c = client
    path = app.settings.schedules_dir / "lectures.yaml"
    path.write_text(COMMENTED.replace('"9·10"', '"9·12"'), encoding="utf-8")
    assert await app.reload_now()
    versions = await app.editor.history(event="lecture")
    assert [v.action for v in versions] == ["outside", "initial"]
    assert versions[0].role == "outside" and versions[0].events == ("lecture",)
    assert '-    date: "9·10"' in versions[0].diff and '+    date: "9·12"' in versions[0].diff
    await signed_in(c)
    page = await (await c.get("/events/lecture/history")).text()
    assert "在控制台之外编辑 edited outside the console" in page
    # Noticed once: another reload with nothing changed adds nothing.
    assert await app.reload_now()
    assert len(await app.editor.history(event="lecture")) == 2


async def test_reverting_a_version_shows_the_same_preview_then_restores_its_text(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    page = await (await c.get("/events/lecture/edit")).text()
    form = edit_form(csrf, base_of(page), "新标题")
    form["date"] = "9·11"
    assert (await c.post("/events/lecture/edit", data=form)).status == 200
    initial = (await app.editor.history(event="lecture"))[-1]
    preview = await c.get(f"/history/{initial.id}/revert")
    body = await preview.text()
    assert preview.status == 200 and "检查通过" in body
    assert '<tr class="change-moved">' in body and "2026-09-10 09:00" in body
    base = re.search(r'name="base" value="([^"]*)"', body)
    assert base
    resp = await c.post(
        f"/history/{initial.id}/revert",
        data={"csrf": csrf, "base": base.group(1)},
        allow_redirects=False,
    )
    assert resp.status == 303
    path = app.settings.schedules_dir / "lectures.yaml"
    assert path.read_text(encoding="utf-8") == COMMENTED
    assert app.schedule.events["lecture"].title == "宪法讲座"
    assert (await app.editor.history(event="lecture"))[0].action == "revert"
    # A revert over a file changed since its preview is refused with the change.
    path.write_text(COMMENTED.replace("宪法讲座\n", "手改的标题\n"), encoding="utf-8")
    again = await c.post(
        f"/history/{initial.id}/revert", data={"csrf": csrf, "base": base.group(1)}
    )
    assert again.status == 409 and "手改的标题" in await again.text()


async def test_history_refusals(client: tuple[App, Client]) -> None:
    _, c = client
    csrf = await signed_in(c, VIEWER_TOKEN)
    assert (await c.get("/history/999999")).status == 404
    assert (await c.get("/history/abc/revert")).status == 404
    assert (await c.get("/history/999999/revert")).status == 404
    assert (await c.post("/history/1/revert", data={"csrf": csrf, "base": ""})).status == 403
    page = await (await c.get("/history/1")).text()
    assert "恢复此版本" not in page  # a viewer has no revert button


# --- attachments on the event form ---


async def test_an_event_saved_with_attachments_shows_them_and_writes_attachments_keys(
    client: tuple[App, Client],
) -> None:
    app, c = client
    files = app.settings.schedules_dir / "files"
    files.mkdir()
    (files / "讲座通知.pdf").write_bytes(b"%PDF-1.4 " + b"x" * 1000)
    (files / "报名表.docx").write_bytes(b"PK" + b"y" * 500)
    csrf = await signed_in(c)
    form = new_event(csrf, attachments="files/讲座通知.pdf\n", r0_attachments="files/报名表.docx")
    resp = await c.post("/events/new", data=form)
    body = await resp.text()
    assert resp.status == 200, body
    assert "<code>讲座通知.pdf</code>（1,009 字节 bytes）、<code>报名表.docx</code>" in body
    resp = await c.post("/events/new", data={**form, "do": "save"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    data = load_yaml_text((app.settings.schedules_dir / "console.yaml").read_text("utf-8"))
    event = data["events"][0]
    assert event["attachments"] == ["files/讲座通知.pdf"]
    assert event["reminders"][0]["attachments"] == ["files/报名表.docx"]
    sent = app.schedule.events["law-lecture"].reminders[0].attachments
    assert [a.path.name for a in sent] == ["讲座通知.pdf", "报名表.docx"]
    page = await (await c.get("/events/law-lecture/edit")).text()
    assert ">files/讲座通知.pdf</textarea>" in page and ">files/报名表.docx</textarea>" in page
    # Clearing the event's own field drops its key; the reminder's stays.
    edit = {**form, "base": base_of(page), "attachments": "", "do": "save"}
    resp = await c.post("/events/law-lecture/edit", data=edit, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    saved = (app.settings.schedules_dir / "console.yaml").read_text("utf-8")
    assert saved.count("attachments:") == 1 and "报名表.docx" in saved


async def test_a_missing_or_outside_attachment_is_refused_next_to_its_field(
    client: tuple[App, Client],
) -> None:
    app, c = client
    (app.settings.schedules_dir.parent / "secret.txt").write_text("not for mail", "utf-8")
    csrf = await signed_in(c)
    form = new_event(csrf, attachments="files/没有这个文件.pdf", r0_attachments="../secret.txt")
    for do in ("preview", "save"):
        resp = await c.post("/events/new", data={**form, "do": do}, allow_redirects=False)
        body = await resp.text()
        assert resp.status == 422, body
        missing = re.search(r'<p class="bad field-error" id="e-attachments"[^>]*>([^<]*)</p>', body)
        assert missing and "events[0].attachments[0]: cannot read" in missing.group(1)
        assert "没有这个文件.pdf" in missing.group(1) and "附件无法读取" in missing.group(1)
        outside = re.search(
            r'<p class="bad field-error" id="e-r0_attachments"[^>]*>([^<]*)</p>', body
        )
        assert outside and "is outside the schedules directory" in outside.group(1)
    assert not (app.settings.schedules_dir / "console.yaml").exists()


async def test_attachments_over_the_size_limit_are_refused_next_to_the_field(
    tmp_path: Path, hook_secret_env: None
) -> None:
    settings = console_settings(tmp_path, max_attachments_bytes=2000)
    (settings.schedules_dir / "big.pdf").write_bytes(b"z" * 3000)
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as c:
            csrf = await signed_in(c)
            resp = await c.post("/events/new", data=new_event(csrf, attachments="big.pdf"))
            body = await resp.text()
    assert resp.status == 422, body
    error = re.search(r'<p class="bad field-error" id="e-attachments"[^>]*>([^<]*)</p>', body)
    assert error and "over NOTIFIER_MAX_ATTACHMENTS_BYTES=2,000" in error.group(1)
    assert "附件总大小超过限制" in error.group(1)


# --- audiences and lists (issue 22, part 4) ---


async def test_an_audiences_members_are_edited_with_bad_rows_shown_before_saving(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c, EDITOR_TOKEN)
    page = await (await c.get("/audiences/staff/edit")).text()
    assert "fazhi@fao.example.com, 法治处" in page
    base = re.search(r'name="base" value="([^"]*)"', page)
    assert base
    members = (
        "fazhi@fao.example.com, 法治处\nlingshi@fao.example.com, 领事处\nnot-an-address, 某处\n"
    )
    form = {"csrf": csrf, "base": base.group(1), "members": members, "do": "preview"}
    resp = await c.post("/audiences/staff/edit", data=form)
    body = await resp.text()
    assert resp.status == 422 and "line 3" in body and "main.yaml: audiences.staff[2].email" in body
    good = members.replace("not-an-address, 某处\n", "")
    resp = await c.post("/audiences/staff/edit", data={**form, "members": good})
    body = await resp.text()
    assert resp.status == 200 and '<span class="row-count">2</span>' in body
    resp = await c.post(
        "/audiences/staff/edit", data={**form, "members": good, "do": "save"}, allow_redirects=False
    )
    assert resp.status == 303
    saved = (app.settings.schedules_dir / "main.yaml").read_text(encoding="utf-8")
    assert "- {email: lingshi@fao.example.com, name: 领事处}" in saved
    assert [m.email for m in app.schedule.audiences["staff"].recipients()] == [
        "fazhi@fao.example.com",
        "lingshi@fao.example.com",
    ]
    assert (await app.editor.history(file="main.yaml"))[0].action == "audience"


async def test_editing_an_audience_keeps_its_members_other_fields_and_takes_new_ones(
    client: tuple[App, Client],
) -> None:
    """A member's fields besides email and name (template fields such as 科室) show as
    `key=value` after the name, are kept when the list is saved, and can be typed."""
    app, c = client
    main = app.settings.schedules_dir / "main.yaml"
    text = main.read_text(encoding="utf-8")
    main.write_text(
        text.replace(
            "- {email: office@fao.example.com, name: 办公室}",
            "- {email: office@fao.example.com, name: 办公室, 科室: 综合科, phone: '010-1234'}",
        ),
        encoding="utf-8",
    )
    assert await app.reload_now()
    csrf = await signed_in(c, EDITOR_TOKEN)
    page = await (await c.get("/audiences/staff/edit")).text()
    assert "office@fao.example.com, 办公室, 科室=综合科, phone=010-1234" in page
    typed = re.search(r'<textarea id="f-members" name="members"[^>]*>([^<]*)</textarea>', page)
    assert typed
    members = typed.group(1) + "\nlingshi@fao.example.com, 领事处, 科室=签证科，护照科\n"
    form = {"csrf": csrf, "base": base_of(page), "members": members, "do": "save"}
    resp = await c.post("/audiences/staff/edit", data=form, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    saved = load_yaml_text(main.read_text(encoding="utf-8"))["audiences"]["staff"]
    assert saved[1] == {
        "email": "office@fao.example.com", "name": "办公室", "科室": "综合科", "phone": "010-1234"
    }  # fmt: skip
    lingshi = {"email": "lingshi@fao.example.com", "name": "领事处", "科室": "签证科,护照科"}
    assert saved[2] == lingshi
    office = list(app.schedule.audiences["staff"].recipients())[1]
    assert office.fields == {"科室": "综合科", "phone": "010-1234"}


async def test_an_uploaded_list_shows_its_rows_and_bad_rows_then_replaces_the_old_one(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    page = await (await c.get("/audiences/enterprises/edit")).text()
    base = re.search(r'name="base" value="([^"]*)"', page)
    assert base and 'type="file"' in page
    listing = "email,name,org\nnew@corp.example.com,丁公司,丁\nbroken,戊公司,戊\n"
    data = FormData({"csrf": csrf, "base": base.group(1), "do": "preview"})
    data.add_field("file", listing.encode("gbk"), filename="名单.csv", content_type="text/csv")
    resp = await c.post("/audiences/enterprises/edit", data=data)
    body = await resp.text()
    assert resp.status == 200, body
    assert "丁公司" in body and "line 3" in body and '<span class="bad-count">1</span>' in body
    path = app.settings.schedules_dir / "enterprises.csv"
    assert "new@corp.example.com" not in path.read_text(encoding="utf-8")  # not yet
    content = re.search(r'name="content" value="([^"]*)"', body)
    assert content
    resp = await c.post(
        "/audiences/enterprises/edit",
        data={"csrf": csrf, "base": base.group(1), "content": content.group(1), "do": "save"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert path.read_text(encoding="utf-8") == listing
    assert app.schedule.audiences["enterprises"].size == 1


UNITS = [
    ["2026年企业名单"],  # a title row above the header, as offices write them
    ["单位名称", "邮箱", "联系人"],
    ["甲公司", "jia@corp.example.com", "张三"],
    ["乙公司", "yi@corp.example.com", "李四"],
]


async def test_an_uploaded_workbook_shows_its_rows_and_bad_row_then_replaces_the_xlsx_file(
    client: tuple[App, Client],
) -> None:
    app, c = client
    schedules = app.settings.schedules_dir
    (schedules / "units.xlsx").write_bytes(workbook_bytes(UNITS))
    main = schedules / "main.yaml"
    text = main.read_text(encoding="utf-8")
    main.write_text(
        text.replace("audiences:\n", "audiences:\n  units:\n    xlsx: units.xlsx\n", 1), "utf-8"
    )
    assert await app.reload_now()
    assert app.schedule.audiences["units"].size == 2
    csrf = await signed_in(c, EDITOR_TOKEN)
    page = await (await c.get("/audiences/units/edit")).text()
    assert 'accept=".xlsx' in page
    upload = workbook_bytes(
        [*UNITS[:2], ["丙公司", "bing@corp.example.com", "王五"], ["丁公司", "不是地址", "赵六"]]
    )
    data = FormData({"csrf": csrf, "base": base_of(page), "do": "preview"})
    data.add_field("file", upload, filename="企业名单.xlsx", content_type=XLSX)
    resp = await c.post("/audiences/units/edit", data=data)
    body = await resp.text()
    assert resp.status == 200, body
    assert "丙公司" in body and '<span class="row-count">1</span>' in body
    bad = re.search(r'<li class="bad">(row 4: [^<]*)</li>', body)
    assert bad and "[column 邮箱]" in bad.group(1)
    assert (schedules / "units.xlsx").read_bytes() != upload  # not yet
    content = re.search(r'name="content" value="([^"]*)"', body)
    assert content and 'name="kind" value="workbook"' in body
    form = {"csrf": csrf, "base": base_of(page), "content": content.group(1), "kind": "workbook"}
    resp = await c.post("/audiences/units/edit", data={**form, "do": "save"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    assert (schedules / "units.xlsx").read_bytes() == upload
    units = list(app.schedule.audiences["units"].recipients())
    assert [(r.email, r.name, r.fields["联系人"]) for r in units] == [
        ("bing@corp.example.com", "丙公司", "王五")
    ]
    assert "xlsx: units.xlsx" in main.read_text(encoding="utf-8")
    version = (await app.editor.history(file="units.xlsx"))[0]
    assert version.action == "audience"
    assert "丙公司,bing@corp.example.com,王五" in version.content and "# row 4:" in version.content
    # Its history is a record of rows: restoring it is refused, never text written into .xlsx.
    assert (await c.get(f"/history/{version.id}/revert")).status == 404
    # A second save from the same (now stale) page is a conflict, not a silent overwrite.
    resp = await c.post("/audiences/units/edit", data={**form, "do": "save"})
    assert resp.status == 409


async def test_a_workbook_for_a_csv_audience_is_refused_saying_what_to_do(
    client: tuple[App, Client],
) -> None:
    app, c = client
    csrf = await signed_in(c)
    page = await (await c.get("/audiences/enterprises/edit")).text()
    data = FormData({"csrf": csrf, "base": base_of(page), "do": "preview"})
    data.add_field("file", workbook_bytes(UNITS), filename="名单.xlsx", content_type=XLSX)
    resp = await c.post("/audiences/enterprises/edit", data=data)
    body = await resp.text()
    assert resp.status == 422
    assert "reads the CSV file enterprises.csv (csv:); upload a CSV" in body
    assert "把 csv: 改为 xlsx:" in body
    path = app.settings.schedules_dir / "enterprises.csv"
    assert path.read_text(encoding="utf-8").startswith("email,")


async def test_a_viewer_cannot_edit_an_audience(client: tuple[App, Client]) -> None:
    _, c = client
    csrf = await signed_in(c, VIEWER_TOKEN)
    page = await (await c.get("/audiences")).text()
    assert "/audiences/staff/edit" not in page
    resp = await c.post("/audiences/staff/edit", data={"csrf": csrf, "members": "a@b.example"})
    assert resp.status == 403


async def test_audience_refusals(client: tuple[App, Client]) -> None:
    _, c2 = client
    csrf = await signed_in(c2)
    assert (await c2.get("/audiences/nobody/edit")).status == 404
    resp = await c2.post(
        "/audiences/staff/edit",
        data={"csrf": csrf, "base": "stale", "members": "a@b.example", "do": "save"},
    )
    assert resp.status == 409
    resp = await c2.post("/audiences/enterprises/edit", data={"csrf": csrf, "do": "preview"})
    assert resp.status == 422


async def test_a_save_recorded_by_another_instance_before_its_write_is_not_a_hand_edit(
    client: tuple[App, Client],
) -> None:
    """A save records its version just before it writes: the instant between, the file on
    disk still holds the old text, and another instance's reload must not call that an edit
    outside the console."""
    app, _ = client
    new = COMMENTED.replace("宪法讲座\n", "宪法讲座（另一实例）\n")
    version = NewVersion(
        file="lectures.yaml", action="edit", event_id="lecture", events=("lecture",),
        role="admin", client="10.0.0.2", at=NOW, hash=file_hash(new), content=new, diff="",
    )  # fmt: skip
    assert await app.console.add_version(version, seq=2) is not None
    assert await app.editor.notice_outside_edits() == 0  # the write is on its way
    (app.settings.schedules_dir / "lectures.yaml").write_text(new, encoding="utf-8")
    assert await app.editor.notice_outside_edits() == 0
    assert [v.action for v in await app.editor.history(file="lectures.yaml")] == ["edit", "initial"]


def test_opening_and_saving_any_shipped_event_unchanged_leaves_its_file_byte_for_byte() -> None:
    """The form says what the file says: every event of the shipped calendar, turned into the
    edit form and back, is written as it was (notations, quoting, comments, other keys)."""
    root = Path(__file__).resolve().parent.parent / "schedules"
    checked = 0
    for path in sorted(root.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        for event in load_yaml_text(text).get("events") or []:
            found = find_event(text, event["id"], path)
            assert found is not None
            new, errors, _ = event_from_form(form_from_event(found[1]))
            assert errors == {}
            assert replaced(text, event["id"], new, path) == text, (path, event["id"])
            checked += 1
    assert checked >= 10  # the shipped calendar has 12 events

"""One bad recipient never holds back the others, and a send that cannot be made is seen.

A CSV row whose name has a line break is reported by `check` (file, line) and left out; a
recipient whose message still cannot be made at send time fails on its own row; a send none
of whose rows can be made shows in /readyz, the console and the admins' digest, is tried
again at each pass, and ends `missed` once its grace has passed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from notifier.cli.main import main
from notifier.compose.admin_notices import ADMIN_TEMPLATES
from notifier.ledger.models import State
from notifier.schedule.recipients import check_name
from notifier.schedule.sheets import read_audience as read_csv_audience
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import ROOT, MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import SmtpServer

TZ = ZoneInfo("Asia/Shanghai")
GOOD = ["biz0@trade0.example.com", "biz1@trade1.example.com", "biz2@trade2.example.com"]
BAD = "bad@trade9.example.com"
# Line 1 the header, line 2 the first row; the bad row starts on line 3 and ends on line 4.
CSV = (
    "email,name,district\r\n"
    f"{GOOD[0]},星海贸易0号公司,思明区\r\n"
    f'{BAD},"星海贸易\r\nBcc: victim@example.com",湖里区\r\n'
    f"{GOOD[1]},星海贸易1号公司,思明区\r\n"
    f"{GOOD[2]},星海贸易2号公司,集美区\r\n"
)
SCHEDULE = """\
audiences:
  enterprises: {csv: enterprises.csv, external: true}
events:
  - id: expo
    title: 投资贸易洽谈会
    date: "05-20"
    audience: enterprises
    template: TEMPLATE
    reminders: [{on: start}]
"""
ADMINS = """\
admins: admins
audiences:
  admins: [{email: xinxi@fao.example.com, name: 管理员}]
"""


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()


def setup(
    make_settings: MakeSettings,
    *,
    csv: str = CSV,
    template: str = "reminder",
    subject: str | None = None,
    body: str | None = None,
    admins: bool = False,
    **overrides: Any,
) -> Path:
    """Write the schedule, its CSV (and a template, if given); return the CSV's path."""
    settings = make_settings(**overrides)
    write_schedule(settings.schedules_dir, SCHEDULE.replace("TEMPLATE", template))
    if admins:
        write_schedule(settings.schedules_dir, ADMINS, name="admins.yaml")
        for name in ADMIN_TEMPLATES:
            shutil.copytree(
                ROOT / "templates" / name, settings.templates_dir / name, dirs_exist_ok=True
            )
        shutil.copy(ROOT / "templates" / "_base.html", settings.templates_dir / "_base.html")
    path = settings.schedules_dir / "enterprises.csv"
    path.write_bytes(csv.encode("utf-8"))
    if subject is not None or body is not None:
        folder = settings.templates_dir / template
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "subject.txt").write_text(subject or "{{ event.title }}", encoding="utf-8")
        (folder / "body.txt").write_text(body or "{{ recipient.name }}", encoding="utf-8")
    return path


def delivered_to(server: SmtpServer) -> list[str]:
    return sorted(str(m["To"]).split("<")[-1].rstrip(">") for m in server.sink.messages)


def plain(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


async def sign_in(client: TestClient[Any, Any]) -> None:
    page = await (await client.get("/")).text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no sign-in form"
    resp = await client.post(
        "/signin",
        data={"csrf": match.group(1), "token": "admin-token-for-tests", "next": "/"},
        allow_redirects=False,
    )
    assert resp.status in (302, 303), await resp.text()


# --- a bad row is found where the audience is loaded ------------------------------------------


def test_check_names_the_csv_file_and_the_line_of_a_name_with_a_line_break(
    make_settings: MakeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    csv_path = setup(make_settings)
    monkeypatch.chdir(tmp_path)
    env = {
        "NOTIFIER_SCHEDULES_DIR": str(settings.schedules_dir),
        "NOTIFIER_TEMPLATES_DIR": str(settings.templates_dir),
        "NOTIFIER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NOTIFIER_MAIL_DROP_DIR": str(tmp_path / "mail"),
        "NOTIFIER_MAIL_FROM": "notifier@fao.example.com",
    }
    result = CliRunner().invoke(main, ["check"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if str(csv_path) in line]
    assert len(warned) == 1, result.output
    assert f"{csv_path}: line 3: name " in warned[0]
    assert "contains a line break" in warned[0] and warned[0].endswith("(row skipped)")
    assert "配置有效 OK" in result.output


async def test_the_good_recipients_get_their_mail_and_the_bad_row_is_reported(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    csv_path = setup(make_settings)
    clock = [at("2026-05-20T09:00:30")]
    async with App(make_settings(smtp=smtp_settings(server)), clock=lambda: clock[0]) as app:
        await app.prepare()
        await app.run_until_idle()
        rows = await app.store.list_deliveries()
        warnings = app.warnings
        size = app.schedule.audiences["enterprises"].size
    assert delivered_to(server) == GOOD
    assert sorted((r.recipient, r.state) for r in rows) == [(g, State.SENT) for g in GOOD]
    assert size == 3
    assert any(w.startswith(f"{csv_path}: line 3: name ") for w in warnings), warnings
    assert all(m["Bcc"] is None for m in server.sink.messages)
    assert "victim@example.com" not in server.sink.recipients()


async def test_an_inline_member_with_a_line_break_is_warned_and_fails_alone(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    settings = make_settings(smtp=smtp_settings(server))
    write_schedule(
        settings.schedules_dir,
        """\
        audiences:
          staff:
            - {email: a@fao.example.com, name: "甲\\r\\nBcc: victim@example.com"}
            - {email: b@fao.example.com, name: 乙}
        events:
          - {id: e, title: 会议, date: "05-20", reminders: [{on: start}]}
        """,
    )
    clock = [at("2026-05-20T09:00:30")]
    async with App(settings, clock=lambda: clock[0]) as app:
        warnings = app.warnings
        await app.prepare()
        await app.run_until_idle()
        rows = {r.recipient: r for r in await app.store.list_deliveries()}
    assert any("audiences.staff[0].name: name '甲" in w for w in warnings), warnings
    assert delivered_to(server) == ["b@fao.example.com"]
    assert rows["b@fao.example.com"].state is State.SENT
    bad = rows["a@fao.example.com"]
    assert bad.state is State.FAILED and bad.message == ""
    assert bad.last_error is not None and "header To contains a line break" in bad.last_error


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("星海贸易有限公司", None),
        ("Xinghai Trading Co., Ltd.", None),
        ("", None),
        ("甲\n乙", "contains a line break"),
        ("甲\r乙", "contains a line break"),
        ("甲\u2028乙", "contains a line break"),
        ("甲\x00乙", "contains a control character '\\x00'"),
        ("甲\t乙", "contains a control character '\\t'"),
        ("甲\x85乙", "contains a control character '\\x85'"),
        ("名" * 256, None),
        ("名" * 257, "257 characters long, over 256"),
    ],
)
def test_a_recipient_name_is_checked_for_what_a_header_cannot_carry(
    name: str, problem: str | None
) -> None:
    found = check_name(name)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_bad_row_is_reported_at_the_line_it_starts_on_after_multi_line_rows(
    tmp_path: Path,
) -> None:
    text = (
        "email,name,note\r\n"
        'a@example.com,甲,"two\r\nlines"\r\n'  # lines 2-3
        "\r\n"  # line 4, blank: no row
        'b@example.com,"乙\n丙",x\r\n'  # lines 5-6
        "c@example.com,丁,\x01\r\n"  # line 7: a control character elsewhere is fine
        "not-an-address,戊,y\r\n"  # line 8
    )
    path = tmp_path / "list.csv"
    path.write_bytes(text.encode("utf-8"))
    got = [(line, problem is None) for line, _, problem in read_csv_audience(path)]
    assert got == [(2, True), (5, False), (7, True), (8, False)]


# --- a recipient whose message cannot be made at send time ----------------------------------

DEPT_CSV = (
    "email,name,dept\n"
    f"{GOOD[0]},星海贸易0号公司,外贸科\n"
    f'{BAD},星海贸易9号公司,"外贸科\n综合科"\n'
    f"{GOOD[1]},星海贸易1号公司,外贸科\n"
)


async def test_a_recipient_whose_message_cannot_be_made_fails_on_its_own_row_and_is_never_sent(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    # The subject carries a CSV column; one row's value spans two lines. `check` renders
    # the first row (fine); at send time only that row's message cannot be made.
    server = smtp_server()
    setup(
        make_settings,
        csv=DEPT_CSV,
        template="dept",
        subject="{{ recipient.dept | default('') }}：{{ event.title }}",
    )
    clock = [at("2026-05-20T09:00:30")]
    async with App(make_settings(smtp=smtp_settings(server)), clock=lambda: clock[0]) as app:
        await app.prepare()
        await app.run_until_idle()
        rows = {r.recipient: r for r in await app.store.list_deliveries()}
        # A retry of the failed row (the digest suggests `notifier retry --state failed`)
        # has no message to send: it fails again, and no empty mail goes out.
        assert await app.store.requeue([State.FAILED], now=clock[0]) == 1
        await app.run_until_idle()
        again = await app.store.get(rows[BAD].id)
        unmade = app.unmade_sends()
        async with TestClient(TestServer(create_web_app(app))) as client:
            await sign_in(client)
            page = await client.get(f"/deliveries/{rows[BAD].id}")
            shown = await page.text()
    assert delivered_to(server) == GOOD[:2]
    assert [rows[g].state for g in GOOD[:2]] == [State.SENT, State.SENT]
    bad = rows[BAD]
    assert bad.state is State.FAILED and bad.message == ""
    assert bad.last_error is not None
    assert bad.last_error.startswith("cannot be made (无法生成): ")
    assert "subject must be one line" in bad.last_error
    assert again is not None and again.state is State.FAILED
    assert again.last_error == bad.last_error
    assert unmade == []
    assert page.status == 200 and "subject must be one line" in shown


# --- a send none of whose rows can be made --------------------------------------------------

# Fails on the day only (days_until == 0): `check`, run the day before, renders the other
# branch, as a template with a special last-day paragraph would.
ON_THE_DAY = "{% if days_until == 0 %}地点：{{ event.vars.room }}{% endif %}{{ recipient.name }}"


async def test_a_send_that_cannot_be_made_shows_in_readyz_and_the_console_and_ends_missed(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    setup(make_settings, template="expo", body=ON_THE_DAY)
    settings = make_settings(smtp=smtp_settings(server))
    clock = [at("2026-05-19T12:00")]
    async with App(settings, clock=lambda: clock[0]) as app:
        clock[0] = at("2026-05-20T09:00:30")
        await app.prepare()
        await app.prepare()  # tried again at each pass, still nothing in the ledger
        made = await app.store.list_deliveries()
        async with TestClient(TestServer(create_web_app(app))) as client:
            ready = await client.get("/readyz")
            reasons = (await ready.json())["reasons"]
            await sign_in(client)
            overview = await (await client.get("/")).text()
    assert made == []
    assert ready.status == 503
    (reason,) = [r for r in reasons if "expo" in r]
    assert "event 'expo'" in reason and "reminder 'on-start'" in reason
    assert "2026-05-20 09:00" in reason and "2026-05-21 09:00" in reason
    assert "room" not in reason  # /readyz answers anyone: the reason is for the console
    assert "无法生成的发送" in overview and "投资贸易洽谈会" in overview and "room" in overview

    # A restart after the grace (24 h): the send is recorded missed, one row per recipient.
    clock[0] = at("2026-05-21T09:01")
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.prepare()
        await app.run_until_idle()
        rows = await app.store.list_deliveries()
        async with TestClient(TestServer(create_web_app(app))) as client:
            ready_after = await client.get("/readyz")
    assert sorted(r.recipient for r in rows) == GOOD
    assert {r.state for r in rows} == {State.MISSED}
    assert all(r.last_error and "room" in r.last_error for r in rows)
    assert ready_after.status == 200
    assert server.sink.messages == []


async def test_the_admins_digest_names_a_send_that_cannot_be_made_then_its_missed_record(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer], db_url: str
) -> None:
    server = smtp_server()
    setup(make_settings, template="expo", body=ON_THE_DAY, admins=True)
    settings = make_settings(smtp=smtp_settings(server), database_url=db_url)
    clock = [at("2026-05-19T12:00")]
    async with App(settings, clock=lambda: clock[0]) as app:
        clock[0] = at("2026-05-20T08:30")  # the digest of 05-19: nothing to say
        await app.prepare()
        clock[0] = at("2026-05-20T09:00:30")
        await app.prepare()
        clock[0] = at("2026-05-21T08:30")  # the digest of 05-20: the send is still retried
        await app.prepare()
        await app.run_until_idle()
        clock[0] = at("2026-05-21T09:30")  # past the grace: recorded missed
        await app.prepare()
        clock[0] = at("2026-05-22T08:30")  # the digest of 05-21: the missed record
        await app.prepare()
        await app.run_until_idle()
    first, second = server.sink.messages
    assert str(first["Subject"]).startswith("【系统通知】2026-05-20 投递失败0封，1次发送无法生成")
    body = plain(first)
    assert "[retrying] 2026-05-20 09:00 expo/on-start 投资贸易洽谈会" in body
    assert "room" in body and "2026-05-21 09:00" in body
    body = plain(second)
    assert "[missed] 2026-05-20 09:00 expo/on-start" in body
    assert "recorded missed for 3 recipients" in body

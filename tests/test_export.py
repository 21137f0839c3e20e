"""The record an office keeps (台账): the delivery log exported as XLSX or CSV from the CLI,
the admin API and the console, read back with a spreadsheet library."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result
from openpyxl import load_workbook

from notifier.cli.main import main
from notifier.compose.records import COLUMNS, neutralise, recipient_name
from notifier.config import Settings
from notifier.ledger.models import State
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.console_fixtures import NOW, console_settings, seed
from tests.smtp_server import SmtpServer

TZ = ZoneInfo("Asia/Shanghai")
BIZ0 = "biz0@trade0.example.com"
SCHEDULE = """\
audiences:
  staff: [{email: fazhi@fao.example.com, name: 法治处}]
  enterprises: {csv: enterprises.csv, external: true}
events:
  - id: apec-card
    title: APEC商务旅行卡政策解读会
    date: "2027-03-18"
    audience: enterprises
    reminders: [{before: 7 days, id: invite}]
  - id: staff-only
    title: "=内部提醒"
    date: "2027-03-18"
    audience: staff
    reminders: [{on: start}]
"""
ENTERPRISES = (
    "邮箱,单位名称,联系人\n"
    "biz0@trade0.example.com,星海贸易有限公司,张三\n"
    'biz1@trade1.example.com,"=HYPERLINK(""http://evil.example"",""点我"")",李四\n'
    "biz2@trade2.example.com,@SUM(1),王五\n"
    "left@trade3.example.com,已退订公司,赵六\n"
)


@pytest.fixture
async def sent(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> tuple[Settings, dict[str, Any]]:
    """Both events sent to a real SMTP server: 4 enterprises (one unsubscribed) and staff."""
    server = smtp_server()
    settings = make_settings(smtp=smtp_settings(server))
    write_schedule(settings.schedules_dir, SCHEDULE)
    (settings.schedules_dir / "enterprises.csv").write_text(ENTERPRISES, encoding="utf-8")
    async with App(settings) as app:
        await app.store.unsubscribe("left@trade3.example.com", now=app.clock(), source="test")
        await app.outbox.send_now("apec-card", reminder_id="invite", now=app.clock())
        await app.outbox.send_now("staff-only", now=app.clock())
        await app.worker.run_until_idle()
        rows = {d.recipient: d for d in await app.store.list_deliveries(limit=100)}
    assert len(server.sink.messages) == 4
    return settings, rows


def export(settings: Settings, *args: str) -> Result:
    env = {
        "NOTIFIER_SCHEDULES_DIR": str(settings.schedules_dir),
        "NOTIFIER_TEMPLATES_DIR": str(settings.templates_dir),
        "NOTIFIER_DATABASE_URL": settings.database_url,
        "NOTIFIER_MAIL_FROM": "notifier@fao.example.com",
        "NOTIFIER_TIMEZONE": "Asia/Shanghai",
    }
    return CliRunner().invoke(main, ["deliveries", "export", *args], env=env)


def read_xlsx(data: bytes | Path) -> list[list[Any]]:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    sheet = load_workbook(source).worksheets[0]
    return [list(r) for r in sheet.iter_rows(values_only=True)]


def test_the_exported_xlsx_has_one_row_per_message_with_its_state_in_local_time(
    sent: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    settings, ledger = sent
    out = tmp_path / "台账.xlsx"
    result = export(settings, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "exported 5 rows" in result.output
    header, *rows = read_xlsx(out)
    assert tuple(header) == COLUMNS
    assert header[0] == "事项 Event" and header[5] == "单位/名称 Name"
    by_recipient = {r[4]: r for r in rows}
    assert sorted(by_recipient) == sorted(ledger)
    first = by_recipient["biz0@trade0.example.com"]
    row = ledger["biz0@trade0.example.com"]
    assert first[0] == "APEC商务旅行卡政策解读会"
    assert first[1] == "提前7天"
    assert first[2] == datetime.fromtimestamp(row.due_at, TZ).replace(tzinfo=None, microsecond=0)
    assert row.sent_at is not None
    assert first[3] == datetime.fromtimestamp(row.sent_at, TZ).replace(tzinfo=None, microsecond=0)
    assert first[5] == "星海贸易有限公司"  # from the stored message's To header
    assert first[6] == "邮件 email"
    assert first[7] == "已发送 sent" and first[8] == 1
    assert first[10] == row.message_id
    skipped = by_recipient["left@trade3.example.com"]
    assert skipped[7] == "已退订跳过 skipped" and skipped[3] is None
    assert skipped[9] == "recipient unsubscribed"
    # Formula injection: text that Excel would run is kept as text, with an apostrophe.
    assert by_recipient["biz1@trade1.example.com"][5].startswith("'=HYPERLINK(")
    assert by_recipient["biz2@trade2.example.com"][5] == "'@SUM(1)"
    assert by_recipient["fazhi@fao.example.com"][0] == "'=内部提醒"
    workbook = load_workbook(out)
    assert all(
        cell.data_type != "f"
        for row_cells in workbook.worksheets[0].iter_rows()
        for cell in row_cells
    )


def test_the_csv_export_is_utf8_with_a_bom_and_neutralises_formulas(
    sent: tuple[Settings, dict[str, Any]],
) -> None:
    settings, _ = sent
    result = export(settings, "--format", "csv", "--event", "apec-card")
    assert result.exit_code == 0, result.output
    data = result.stdout_bytes
    assert data.startswith(b"\xef\xbb\xbf")
    header, *rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert tuple(header) == COLUMNS
    assert len(rows) == 4
    names = {r[4]: r[5] for r in rows}
    assert names["biz1@trade1.example.com"] == '\'=HYPERLINK("http://evil.example","点我")'
    assert names["biz2@trade2.example.com"] == "'@SUM(1)"
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r)


@pytest.mark.parametrize(
    ("args", "recipients"),
    [
        (["--state", "skipped"], ["left@trade3.example.com"]),
        (["--audience", "staff"], ["fazhi@fao.example.com"]),
        (["--reminder", "invite", "--recipient", BIZ0], [BIZ0]),
        (["--event", "staff-only"], ["fazhi@fao.example.com"]),
        (["--to", "2000-01-01"], []),
        (["--from", "2000-01-01", "--audience", "enterprises", "--state", "sent"],
         ["biz0@trade0.example.com", "biz1@trade1.example.com", "biz2@trade2.example.com"]),
    ],
)  # fmt: skip
def test_the_export_takes_the_filters(
    sent: tuple[Settings, dict[str, Any]], args: list[str], recipients: list[str]
) -> None:
    settings, _ = sent
    result = export(settings, "--format", "csv", *args)
    assert result.exit_code == 0, result.output
    _, *rows = list(csv.reader(io.StringIO(result.stdout_bytes.decode("utf-8-sig"))))
    assert sorted(r[4] for r in rows) == recipients


def test_an_unknown_audience_is_a_clear_error(sent: tuple[Settings, dict[str, Any]]) -> None:
    settings, _ = sent
    result = export(settings, "--audience", "nobody", "--format", "csv")
    assert result.exit_code == 1
    assert "unknown audience 'nobody'" in result.output


async def test_the_admin_api_streams_the_export_with_the_same_filters(
    sent: tuple[Settings, dict[str, Any]],
) -> None:
    settings, _ = sent
    async with App(settings) as app, TestClient(TestServer(create_web_app(app))) as c:
        auth = {"Authorization": "Bearer admin-token-for-tests"}
        resp = await c.get(
            "/api/deliveries/export", params={"format": "csv", "state": "sent"}, headers=auth
        )
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in resp.headers["Content-Disposition"]
        _, *rows = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
        assert len(rows) == 4 and {r[7] for r in rows} == {"已发送 sent"}
        resp = await c.get("/api/deliveries/export", params={"event": "apec-card"}, headers=auth)
        assert resp.status == 200
        assert len(read_xlsx(await resp.read())) == 5  # header + 4
        resp = await c.get("/api/deliveries/export", params={"audience": "nobody"}, headers=auth)
        assert resp.status == 422
        assert "unknown audience" in (await resp.json())["detail"]
        resp = await c.get("/api/deliveries/export", params={"format": "pdf"}, headers=auth)
        assert resp.status == 400
        resp = await c.get("/api/deliveries/export")
        assert resp.status == 401


async def test_the_consoles_export_button_exports_exactly_the_filtered_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_console_http import sign_in

    monkeypatch.setenv("NOTIFIER_HOOK_VISIT_REQUEST", "whsec_" + "A" * 44)
    async with App(console_settings(tmp_path), clock=lambda: NOW) as app:
        await seed(app)  # one dead row, one sent row
        async with TestClient(TestServer(create_web_app(app))) as c:
            await sign_in(c)
            page = await (await c.get("/deliveries", params={"state": "dead"})).text()
            assert 'href="/deliveries/export?state=dead&amp;format=xlsx"' in page
            assert "导出 Export" in page
            resp = await c.get("/deliveries/export", params={"state": "dead", "format": "xlsx"})
            assert resp.status == 200
            assert resp.headers["Content-Security-Policy"]
            _, *rows = read_xlsx(await resp.read())
            assert [r[7] for r in rows] == ["放弃 dead"]
            assert rows[0][9] == "550 5.1.1 mailbox unavailable"
            resp = await c.get("/deliveries/export", params={"format": "csv"})
            _, *rows = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
            assert sorted(r[7] for r in rows) == ["已发送 sent", "放弃 dead"]
            resp = await c.get("/deliveries/export", params={"format": "pdf"})
            assert resp.status == 400 and "text/html" in resp.headers["Content-Type"]
    assert State.DEAD


@pytest.mark.parametrize(
    ("value", "safe"),
    [("=1+1", "'=1+1"), ("+86", "'+86"), ("-1", "'-1"), ("@x", "'@x"), ("星海", "星海"), ("", "")],
)
def test_a_cell_that_would_be_a_formula_gets_an_apostrophe(value: str, safe: str) -> None:
    assert neutralise(value) == safe


def test_the_name_is_read_from_an_encoded_and_folded_to_header() -> None:
    head = (
        "From: x@y\r\nTo: =?utf-8?b?5pif5rW36LS45piT5pyJ6ZmQ5YWs5Y+4?=\r\n"
        " <biz0@trade0.example.com>\r\nSubject: s\r\n\r\nTo: not this"
    )
    assert recipient_name(head) == "星海贸易有限公司"
    assert recipient_name("Subject: s\r\n\r\n") == ""
    assert recipient_name('To: "Acme, Inc." <a@acme.example>\r\n\r\n') == "Acme, Inc."
    assert recipient_name("To: a@acme.example\r\n\r\n") == ""

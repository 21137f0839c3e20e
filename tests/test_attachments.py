"""Attachments: an outreach reminder with a Chinese-named PDF and DOCX to an XLSX audience,
through a real SMTP server; the contents stored once in the ledger, not once per row."""

from __future__ import annotations

import base64
import io
import re
import sqlite3
import time
import zipfile
from collections.abc import Callable
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from urllib.parse import quote

import pytest
from openpyxl import Workbook, load_workbook

from notifier.config import Settings
from notifier.errors import ConfigError
from notifier.ledger.attachments import AttachmentCache
from notifier.service import App
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import Faults, SmtpServer

# A long name: QQ Mail and Exmail show such a name as tcmime.*.bin when it is split into
# RFC 2231 continuations.
PDF_NAME = "2027年APEC商务旅行卡政策解读会邀请函（市外办法治处）.pdf"
DOCX_NAME = "报名回执.docx"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SCHEDULE = """\
audiences:
  enterprises: {xlsx: 企业名单.xlsx, external: true}
events:
  - id: apec-card
    title: APEC商务旅行卡政策解读会
    date: "2027-03-18"
    audience: enterprises
    attachments: [files/PDF_NAME]
    reminders:
      - {before: 7 days, id: invite, attachments: [files/DOCX_NAME]}
""".replace("PDF_NAME", PDF_NAME).replace("DOCX_NAME", DOCX_NAME)


def pdf_bytes(size: int) -> bytes:
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    return head + bytes((i * 7) % 251 for i in range(size - len(head)))


def docx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document>报名回执</w:document>")
    return buffer.getvalue()


def outreach(settings: Settings, enterprises: int = 2, pdf_size: int = 200_000) -> dict[str, bytes]:
    """The schedule, an XLSX audience with Chinese headers, and the two files."""
    directory = settings.schedules_dir
    write_schedule(directory, SCHEDULE)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["单位名称", "联系人", "邮箱", "电话"])
    for i in range(enterprises):
        sheet.append(
            [
                f"星海贸易{i}号有限公司",
                f"联系人{i}",
                f"biz{i}@trade{i}.example.com",
                13800000000 + i,
            ]
        )
    workbook.save(directory / "企业名单.xlsx")
    (directory / "files").mkdir()
    files = {PDF_NAME: pdf_bytes(pdf_size), DOCX_NAME: docx_bytes()}
    for name, data in files.items():
        (directory / "files" / name).write_bytes(data)
    return files


def ledger(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))


def encoded_words_in(raw: str, param: str) -> str:
    """The decoded value of `param="=?utf-8?b?...?="` (folded or not) in raw headers."""
    match = re.search(param + r'="((?:=\?utf-8\?b\?[^?]*\?=\s*)+)"', raw)
    assert match, f"no RFC 2047 {param}= in {raw[:300]!r}"
    return str(make_header(decode_header(match.group(1))))


async def test_a_chinese_named_pdf_and_docx_arrive_readable_in_both_encodings(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    # The first attempt is refused (451): the retry must send the very same bytes.
    server = smtp_server(Faults(fail_first=1))
    settings = make_settings(smtp=smtp_settings(server))
    files = outreach(settings)
    clock = [time.time()]
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.outbox.send_now("apec-card", reminder_id="invite", now=clock[0])
        # Edited after the rows were made: the rows still send what was there then.
        (settings.schedules_dir / "files" / PDF_NAME).write_bytes(b"%PDF-1.4 edited later")
        sent = (await app.worker.run_until_idle()).sent
        clock[0] += settings.delivery.max_delay + 1  # past the retry's backoff, no sleep
        sent += (await app.worker.run_until_idle()).sent
        record = await app.delivery_record("xlsx")
        exported = b"".join([chunk async for chunk in record.chunks()])
    assert sent == 2
    assert len(server.sink.messages) == 2
    for msg in server.sink.messages:
        assert isinstance(msg, EmailMessage)
        parts = list(msg.iter_attachments())
        assert [p.get_filename() for p in parts] == [PDF_NAME, DOCX_NAME]
        assert [p.get_content_type() for p in parts] == [
            "application/pdf",
            DOCX_TYPE,
        ]
        assert [p.get_content() for p in parts] == [files[PDF_NAME], files[DOCX_NAME]]
        body = msg.get_body(("plain",))
        assert body is not None and "APEC商务旅行卡政策解读会" in str(body.get_content())
    for raw_bytes in server.sink.raw:
        raw = raw_bytes.decode("ascii")
        for name in (PDF_NAME, DOCX_NAME):
            assert f"filename*=utf-8''{quote(name, safe='')}" in raw  # RFC 2231, one line
        assert "filename*0" not in raw  # no continuations
        heads = raw.split("Content-Transfer-Encoding: base64")
        pdf_head = next(h for h in heads if "application/pdf" in h)
        assert encoded_words_in(pdf_head, " name") == PDF_NAME  # RFC 2047 in Content-Type
        assert encoded_words_in(pdf_head, " filename") == PDF_NAME
        docx_head = next(h for h in heads if "wordprocessingml" in h)
        assert encoded_words_in(docx_head, " name") == DOCX_NAME
    # Three attempts (one refused); the retried message's bytes are the first try's.
    by_id: dict[str, list[bytes]] = {}
    for raw_bytes in server.sink.raw:
        by_id.setdefault(
            str(message_from_bytes(raw_bytes, policy=default)["Message-ID"]), []
        ).append(raw_bytes)
    assert sorted(len(v) for v in by_id.values()) == [1, 2]
    assert all(len(set(v)) == 1 for v in by_id.values())
    # The ledger holds each content once; the rows hold a marker, not the file.
    with ledger(settings) as db:
        stored = db.execute("SELECT size FROM attachments ORDER BY size").fetchall()
        sizes = [len(m) for (m,) in db.execute("SELECT message FROM deliveries")]
    assert stored == [(len(files[DOCX_NAME]),), (len(files[PDF_NAME]),)]
    assert len(sizes) == 2 and max(sizes) < 10_000
    # The record: one row per message, with its state.
    header, *rows = [
        list(r)
        for r in load_workbook(io.BytesIO(exported)).worksheets[0].iter_rows(values_only=True)
    ]
    assert header[4] == "收件人 Recipient"
    assert sorted((r[4], r[5], r[7]) for r in rows) == [
        ("biz0@trade0.example.com", "星海贸易0号有限公司", "已发送 sent"),
        ("biz1@trade1.example.com", "星海贸易1号有限公司", "已发送 sent"),
    ]


async def test_the_preview_names_the_attachments_with_their_type_and_size(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    files = outreach(settings)
    async with App(settings) as app:
        event = app.schedule.events["apec-card"]
        [reminder] = event.reminders
    assert [(a.name, a.mime, a.size) for a in reminder.attachments] == [
        (PDF_NAME, "application/pdf", len(files[PDF_NAME])),
        (
            DOCX_NAME,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            len(files[DOCX_NAME]),
        ),
    ]


def test_a_missing_attachment_is_a_check_error_naming_the_file(make_settings: MakeSettings) -> None:
    settings = make_settings()
    outreach(settings)
    (settings.schedules_dir / "files" / DOCX_NAME).unlink()
    from datetime import datetime

    from notifier.checks import load_config

    with pytest.raises(ConfigError) as raised:
        load_config(settings, now=datetime(2027, 3, 1).astimezone())
    text = str(raised.value)
    assert "reminders[0].attachments[0]: cannot read" in text
    assert str(settings.schedules_dir.resolve() / "files" / DOCX_NAME) in text


def test_an_attachment_outside_the_schedules_directory_is_refused(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    outreach(settings)
    text = (settings.schedules_dir / "main.yaml").read_text()
    (settings.schedules_dir / "main.yaml").write_text(
        text.replace("files/报名回执.docx", "../secret.txt")
    )
    (settings.schedules_dir.parent / "secret.txt").write_text("x")
    from datetime import datetime

    from notifier.checks import load_config

    with pytest.raises(ConfigError) as raised:
        load_config(settings, now=datetime(2027, 3, 1).astimezone())
    assert "is outside the schedules directory" in str(raised.value)


def test_attachments_over_the_limit_are_a_check_error_naming_the_files(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(max_attachments_bytes=250_000)
    outreach(settings, pdf_size=200_000)  # 200 KB is 270 KB as sent (base64)
    from datetime import datetime

    from notifier.checks import load_config

    with pytest.raises(ConfigError) as raised:
        load_config(settings, now=datetime(2027, 3, 1).astimezone())
    text = str(raised.value)
    assert "over NOTIFIER_MAX_ATTACHMENTS_BYTES=250,000" in text
    assert PDF_NAME in text and DOCX_NAME in text
    load_config(make_settings(max_attachments_bytes=300_000), now=datetime(2027, 3, 1).astimezone())


def test_the_cache_of_encoded_attachments_stays_within_its_bound() -> None:
    cache = AttachmentCache(limit=10)
    cache.put("a", "x" * 6)
    cache.put("b", "y" * 6)  # a is dropped
    cache.put("c", "z" * 11)  # over the bound alone: not kept
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, "y" * 6, None)
    assert base64  # used by the module's helpers


async def test_previews_and_the_delivery_page_show_each_file_with_type_and_size(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from notifier.web import create_web_app
    from tests.test_console_http import sign_in

    server = smtp_server()
    settings = make_settings(smtp=smtp_settings(server))
    files = outreach(settings)
    pdf_kb = f"{len(files[PDF_NAME]) / 1000:.1f} KB"
    async with App(settings) as app, TestClient(TestServer(create_web_app(app))) as c:
        auth = {"Authorization": "Bearer admin-token-for-tests"}
        resp = await c.post(
            "/api/preview", json={"event": "apec-card", "reminder": "invite"}, headers=auth
        )
        assert resp.status == 200
        assert (await resp.json())["attachments"] == [
            {"name": PDF_NAME, "type": "application/pdf", "size": len(files[PDF_NAME])},
            {"name": DOCX_NAME, "type": DOCX_TYPE, "size": len(files[DOCX_NAME])},
        ]
        await sign_in(c)
        page = await (await c.get("/events/apec-card")).text()
        assert PDF_NAME in page and f"(application/pdf, {pdf_kb})" in page
        await app.outbox.send_now("apec-card", reminder_id="invite", now=app.clock())
        await app.worker.run_until_idle()
        [row, _] = await app.store.list_deliveries(limit=10)
        page = await (await c.get(f"/deliveries/{row.id}")).text()
        assert PDF_NAME in page and f"(application/pdf, {pdf_kb})" in page
        assert DOCX_NAME in page


def test_the_cli_preview_lists_the_attachments(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from notifier.cli.main import main

    settings = make_settings()
    files = outreach(settings)
    env = {
        "NOTIFIER_SCHEDULES_DIR": str(settings.schedules_dir),
        "NOTIFIER_TEMPLATES_DIR": str(settings.templates_dir),
        "NOTIFIER_DATABASE_URL": settings.database_url,
        "NOTIFIER_MAIL_FROM": "notifier@fao.example.com",
    }
    result = CliRunner().invoke(main, ["preview", "apec-card", "--reminder", "invite"], env=env)
    assert result.exit_code == 0, result.output
    size = f"{len(files[PDF_NAME]) / 1000:.1f} KB"
    assert f"附件 Attachment: {PDF_NAME} (application/pdf, {size})" in result.output
    assert f"附件 Attachment: {DOCX_NAME} ({DOCX_TYPE}," in result.output


async def test_a_webhook_sends_the_files_it_names_from_its_hooks_own_list_only(
    make_settings: MakeSettings,
    smtp_server: Callable[..., SmtpServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from notifier.web import create_web_app
    from tests.test_web import HOOK_ENV, NOW, SECRET, post_hook

    monkeypatch.setenv(HOOK_ENV, SECRET)
    server = smtp_server()
    settings = make_settings(smtp=smtp_settings(server))
    files = outreach(settings)
    write_schedule(
        settings.schedules_dir,
        f"""\
        hooks:
          - id: notice
            secret_env: {HOOK_ENV}
            template: visit-notice
            attachments: [files/{PDF_NAME}, files/{DOCX_NAME}]
        """,
        name="notice.yaml",
    )
    payload = {"visitor": "张三", "org": "ACME 公司", "date": "2026-03-05"}
    app = App(settings, clock=lambda: NOW)
    async with app, TestClient(TestServer(create_web_app(app))) as c:
        one = {**payload, "to": ["a@example.org"], "attachments": [DOCX_NAME]}
        assert (await post_hook(c, one, "h1", hook="notice"))[0] == 202
        every = {**payload, "to": ["b@example.org"]}
        assert (await post_hook(c, every, "h2", hook="notice"))[0] == 202
        for bad in (["../main.yaml"], ["/etc/passwd"], [f"files/{PDF_NAME}"]):
            status, answer = await post_hook(
                c, {**payload, "to": ["c@example.org"], "attachments": bad}, "h3", hook="notice"
            )
            assert status == 422, answer
            assert "is not one of the hook's attachments" in answer["detail"]
        await app.worker.run_until_idle()
    got = {str(m["To"]): m for m in server.sink.messages}
    assert isinstance(got["a@example.org"], EmailMessage)
    assert [p.get_filename() for p in got["a@example.org"].iter_attachments()] == [DOCX_NAME]
    assert isinstance(got["b@example.org"], EmailMessage)
    parts = list(got["b@example.org"].iter_attachments())
    assert [p.get_filename() for p in parts] == [PDF_NAME, DOCX_NAME]
    assert parts[0].get_content() == files[PDF_NAME]


def test_check_and_the_preview_say_a_chat_group_gets_the_text_without_the_files(
    config_dirs: tuple[Path, Path], make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime

    from click.testing import CliRunner

    from notifier.checks import load_config
    from notifier.cli.main import main
    from tests.test_preview_audiences import ROBOT_URL, SCHEDULE

    monkeypatch.setenv("NOTIFIER_TEST_URL", ROBOT_URL)
    schedules = config_dirs[0]
    text = SCHEDULE.replace('date: "4·15"\n', 'date: "4·15"\n    attachments: [通知.pdf]\n')
    write_schedule(schedules, text)
    (schedules / "通知.pdf").write_bytes(pdf_bytes(1000))
    settings = make_settings()
    _, _, warnings = load_config(settings, now=datetime(2026, 3, 1).astimezone())
    assert any(
        "reminder 'on-start': chat group 'group' gets the text without the attachments" in w
        for w in warnings
    ), warnings
    env = {
        "NOTIFIER_SCHEDULES_DIR": str(settings.schedules_dir),
        "NOTIFIER_TEMPLATES_DIR": str(settings.templates_dir),
        "NOTIFIER_DATABASE_URL": settings.database_url,
        "NOTIFIER_TEST_URL": ROBOT_URL,
    }
    args = ["preview", "security-day", "--reminder", "on-start", "--audience", "group"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "the group gets the text without 1 attachment(s)" in result.output


@pytest.mark.postgres
async def test_on_postgresql_the_content_is_stored_once_and_sent_whole(
    make_settings: MakeSettings, pg_url: str, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    settings = make_settings(database_url=pg_url, smtp=smtp_settings(server))
    files = outreach(settings, enterprises=3)
    async with App(settings) as app:
        await app.outbox.send_now("apec-card", reminder_id="invite", now=app.clock())
        # The same send again (`--again`): the same contents, no second copy stored.
        await app.outbox.send_now("apec-card", reminder_id="invite", now=app.clock(), again=True)
        stats = await app.worker.run_until_idle()
        stored = await app.store.db.fetchall("SELECT digest, size FROM attachments")
    assert stats.sent == 6
    assert sorted(int(size) for _, size in stored) == sorted(len(d) for d in files.values())
    for msg in server.sink.messages:
        assert isinstance(msg, EmailMessage)
        assert [p.get_content() for p in msg.iter_attachments()] == list(files.values())

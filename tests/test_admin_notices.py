"""What the admins are told: moved send dates (once per change), failed deliveries, rejects."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from notifier.compose.admin_notices import (
    ADMIN_TEMPLATES,
    DIGEST_TEMPLATE,
    REJECTED_TEMPLATE,
    SNAPSHOT_META,
    calendar_from,
    changed_days,
    moved_sends,
    next_digest,
    snapshot,
)
from notifier.config import HttpSettings, NoticeSettings, Settings
from notifier.dates.workdays import WorkCalendar
from notifier.ledger.models import State
from notifier.schedule.load import load_schedule
from notifier.service import App
from tests.conftest import ROOT, MakeSettings, smtp_settings, write_schedule
from tests.robots import Platforms
from tests.smtp_server import POLICY_REFUSAL, Faults, SmtpServer
from tests.waiting import wait_for

TZ = ZoneInfo("Asia/Shanghai")
ADMIN = "xinxi@fao.example.com"


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()


def with_admin_templates(templates: Path) -> None:
    for name in ADMIN_TEMPLATES:
        shutil.copytree(ROOT / "templates" / name, templates / name, dirs_exist_ok=True)
    shutil.copy(ROOT / "templates" / "_base.html", templates / "_base.html")


def schedule_text(event_day: date) -> str:
    return f"""\
    admins: admins
    audiences:
      admins: [{{email: {ADMIN}, name: 管理员}}]
      staff: [{{email: fazhi@fao.example.com, name: 法治处}}]
    events:
      - id: report
        title: 年度报告报送截止日
        date: "{event_day.isoformat()}"
        reminders: [{{on: start}}]
    """


def holidays_text(*days_off: date) -> str:
    year = days_off[0].year
    listed = ", ".join(f'"{d.isoformat()}"' for d in days_off)
    return f'holidays:\n  "{year}":\n    off: [{listed}]\n'


def plain(msg: Any) -> str:
    body = cast(EmailMessage, msg).get_body(preferencelist=("plain",))
    assert body is not None
    return str(cast(EmailMessage, body).get_content())


def a_workday_after_a_workday(start: date) -> date:
    """The first day from `start` that is a workday and whose previous day is one too."""
    calendar = WorkCalendar()
    day = start
    while not (calendar.is_workday(day) and calendar.is_workday(day - timedelta(days=1))):
        day += timedelta(days=1)
    return day


async def test_a_holidays_file_added_to_a_running_service_is_announced_once_across_restarts(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    settings = make_settings(
        watch=True, http=HttpSettings(enabled=False), smtp=smtp_settings(server)
    )
    with_admin_templates(settings.templates_dir)
    target = a_workday_after_a_workday(datetime.now(TZ).date() + timedelta(days=20))
    write_schedule(settings.schedules_dir, schedule_text(target))

    async def run_once(change: Callable[[], None] | None) -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        async with App(settings) as app:
            task = asyncio.create_task(app.run(stop, ready=ready))
            await asyncio.wait_for(ready.wait(), 5)
            if change is not None:
                change()
                await wait_for(lambda: len(server.sink.messages) >= 1)
            else:
                await app.worker.run_until_idle()
            stop.set()
            await asyncio.wait_for(task, 10)

    await run_once(None)  # the first start only records what the workday data says
    assert server.sink.messages == []
    await run_once(
        lambda: write_schedule(settings.schedules_dir, holidays_text(target), name="holidays.yaml")
    )
    await run_once(None)  # a restart with the same data: nothing new
    assert len(server.sink.messages) == 1
    msg = server.sink.messages[0]
    assert "发送日期调整" in str(msg["Subject"])
    assert str(msg["To"]).endswith(f"<{ADMIN}>")
    body = plain(msg)
    before = target - timedelta(days=1)
    assert f"年度报告报送截止日（report，{target.isoformat()}）— 当天（on-start）" in body
    assert f"{target.isoformat()} → {before.isoformat()}" in body


async def test_one_change_gives_one_notice_even_when_another_instance_saw_the_old_data(
    make_settings: MakeSettings, db_url: str
) -> None:
    settings = make_settings(database_url=db_url)
    with_admin_templates(settings.templates_dir)
    now = at("2026-04-01T10:00")
    target = a_workday_after_a_workday(date(2026, 4, 20))
    write_schedule(settings.schedules_dir, schedule_text(target))
    async with App(settings, clock=lambda: now) as app:
        assert await app.notices.workdays_changed(now) == 0
        old = await app.store.get_meta(SNAPSHOT_META)
        write_schedule(settings.schedules_dir, holidays_text(target), name="holidays.yaml")
        assert app.reload()
        assert await app.notices.workdays_changed(now) == 1
        assert await app.notices.workdays_changed(now) == 0  # the snapshot moved on
        # A second instance that read the snapshot before the first one wrote it:
        assert old is not None
        await app.store.set_meta(SNAPSHOT_META, old)
        assert await app.notices.workdays_changed(now + 60) == 0  # same key: no new row
        rows = await app.store.list_deliveries()
    assert [(r.event_id, r.recipient, r.source) for r in rows] == [
        ("admin:admin-moved", ADMIN, "admin")
    ]


def test_moved_sends_lists_a_moved_reminder_and_the_days_an_every_series_gains_and_loses(
    tmp_path: Path,
) -> None:
    write_schedule(
        tmp_path,
        """\
        audiences:
          staff: [{email: a@example.com, name: 甲}]
        events:
          - id: week
            title: 宪法宣传周
            date: "12-01..12-07"
            reminders: [{every: workday}, {on: start}]
        """,
    )
    schedule = load_schedule(tmp_path)
    since = datetime(2026, 11, 1, tzinfo=TZ)
    old = snapshot(schedule.calendar, since.date())
    write_schedule(tmp_path, holidays_text(date(2026, 12, 1)), name="holidays.yaml")
    changed = load_schedule(tmp_path)
    new = snapshot(changed.calendar, since.date())
    assert changed_days(old, new) == [(date(2026, 12, 1), False)]
    moved = moved_sends(
        changed, calendar_from(old, changed.calendar), since, since + timedelta(days=60), TZ
    )
    assert [(m.reminder_id, m.old, m.new) for m in moved] == [
        ("on-start", date(2026, 12, 1), date(2026, 11, 30)),
        ("every-workday", date(2026, 12, 1), None),
    ]


async def test_a_daily_digest_lists_yesterdays_failed_deliveries_and_nothing_when_none(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer], db_url: str
) -> None:
    server = smtp_server(Faults(reject={"fazhi@fao.example.com"}, reject_reply=POLICY_REFUSAL))
    settings = make_settings(database_url=db_url, smtp=smtp_settings(server))
    with_admin_templates(settings.templates_dir)
    write_schedule(settings.schedules_dir, schedule_text(date(2026, 4, 20)))
    clock = [at("2026-04-14T10:00")]
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.outbox.send_now("report", now=clock[0])
        await app.worker.run_until_idle()
        assert [r.state for r in await app.store.list_deliveries()] == [State.FAILED]
        clock[0] = at("2026-04-15T07:59")
        assert await app.notices.daily_digest(clock[0]) == 0  # before 08:00
        clock[0] = at("2026-04-15T08:30")
        await app.prepare()  # the timer's pass makes the digest
        await app.worker.run_until_idle()
        assert await app.notices.daily_digest(clock[0] + 3600) == 0  # once a day
        clock[0] = at("2026-04-16T08:30")
        assert await app.notices.daily_digest(clock[0]) == 0  # nothing failed on 04-15
    assert len(server.sink.messages) == 1
    msg = server.sink.messages[0]
    assert str(msg["Subject"]).startswith("【系统通知】2026-04-14 投递失败1封")
    body = plain(msg)
    assert "[failed]" in body and "report/manual → fazhi@fao.example.com" in body
    assert "550" in body


async def test_a_rejected_reload_is_told_to_the_admins_with_files_and_errors(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    settings = make_settings(
        watch=True, http=HttpSettings(enabled=False), smtp=smtp_settings(server)
    )
    with_admin_templates(settings.templates_dir)
    write_schedule(settings.schedules_dir, schedule_text(date(2030, 4, 15)))
    stop, ready = asyncio.Event(), asyncio.Event()
    async with App(settings) as app:
        task = asyncio.create_task(app.run(stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 5)
        bad = write_schedule(
            settings.schedules_dir,
            "events:\n  - {id: x, title: X, date: '4·15', reminders: [{before: 7x}]}\n",
            name="bad.yaml",
        )
        await wait_for(lambda: len(server.sink.messages) >= 1)
        stop.set()
        await asyncio.wait_for(task, 10)
    msg = server.sink.messages[0]
    assert "日程配置有误" in str(msg["Subject"])
    body = plain(msg)
    assert f"  - {bad}" in body
    assert "events[0].reminders[0].before: '7x' is not a duration" in body


def test_check_requires_the_admin_templates_when_admins_is_set(
    make_settings: MakeSettings,
) -> None:
    from notifier.checks import load_config
    from notifier.errors import ConfigError

    settings = make_settings()
    write_schedule(settings.schedules_dir, schedule_text(date(2030, 4, 15)))
    try:
        load_config(settings, now=datetime(2026, 4, 1, tzinfo=TZ))
    except ConfigError as exc:
        errors = exc.errors
    else:
        raise AssertionError("check passed without the admin templates")
    assert any("admin-moved: template not found: `admins:` is set" in e for e in errors)


# --- admins: chat groups beside email ----------------------------------------------------

ROBOT_KEY = "ops-robot-key-0123456789abcdef"


def chat_admins_text(event_day: date, admins: str, *, form: str = "") -> str:
    """The admin schedule with an admins' chat group (`ops-group`, a WeCom or Feishu robot)."""
    kind = "feishu" if form else "wecom"
    return schedule_text(event_day).rstrip(" ").replace(
        "    admins: admins\n", f"    admins: {admins}\n"
    ).replace("    audiences:\n", "    audiences:\n      ops-group: {chat: ops-robot}\n") + (
        "    channels:\n"
        "      ops-robot:\n"
        f"        type: {kind}\n"
        "        url_env: NOTIFIER_TEST_OPS_URL\n"
        "        per_minute: 0\n" + (f"        form: {form}\n" if form else "")
    )


@pytest.fixture
async def platforms() -> AsyncIterator[Platforms]:
    server = await Platforms().start()
    yield server
    await server.stop()


def point_robot(monkeypatch: pytest.MonkeyPatch, platforms: Platforms, *, feishu: bool) -> str:
    path = (
        f"/open-apis/bot/v2/hook/{ROBOT_KEY}"
        if feishu
        else f"/cgi-bin/webhook/send?key={ROBOT_KEY}"
    )
    monkeypatch.setenv("NOTIFIER_TEST_OPS_URL", platforms.url(path))
    return ROBOT_KEY


async def test_the_digest_goes_to_the_admins_mailbox_and_their_chat_group_once(
    make_settings: MakeSettings,
    smtp_server: Callable[..., SmtpServer],
    platforms: Platforms,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    robot = platforms.add(point_robot(monkeypatch, platforms, feishu=False))
    server = smtp_server(Faults(reject={"fazhi@fao.example.com"}, reject_reply=POLICY_REFUSAL))
    settings = make_settings(smtp=smtp_settings(server))
    with_admin_templates(settings.templates_dir)
    write_schedule(
        settings.schedules_dir, chat_admins_text(date(2026, 4, 20), "[admins, ops-group]")
    )
    clock = [at("2026-04-14T10:00")]
    async with App(settings, clock=lambda: clock[0]) as app:
        await app.outbox.send_now("report", now=clock[0])
        await app.run_until_idle()
        clock[0] = at("2026-04-15T08:30")
        await app.prepare()
        await app.run_until_idle()
        assert await app.notices.daily_digest(clock[0] + 3600) == 0  # once a day
        rows = await app.store.list_deliveries(event="admin:admin-digest")
    assert sorted((r.channel, r.recipient, r.state) for r in rows) == [
        ("email", ADMIN, State.SENT),
        ("ops-robot", "ops-robot", State.SENT),
    ]
    assert len(server.sink.messages) == 1 and "投递失败1封" in str(
        server.sink.messages[0]["Subject"]
    )
    (posted,) = robot.received
    content = posted["markdown"]["content"]  # the template's chat.md, not the email body
    assert content.startswith("### 【系统通知】2026-04-14 投递失败1封")
    assert "1. [failed] report/manual → fazhi@fao.example.com：550" in content


async def test_admins_naming_only_a_chat_group_get_the_moved_notice_there_in_its_form(
    make_settings: MakeSettings, platforms: Platforms, monkeypatch: pytest.MonkeyPatch
) -> None:
    robot = platforms.add(point_robot(monkeypatch, platforms, feishu=True))
    settings = make_settings()
    with_admin_templates(settings.templates_dir)
    now = at("2026-04-01T10:00")
    target = a_workday_after_a_workday(date(2026, 4, 20))
    write_schedule(settings.schedules_dir, chat_admins_text(target, "ops-group", form="post"))
    async with App(settings, clock=lambda: now) as app:
        assert await app.notices.workdays_changed(now) == 0  # the first look: a snapshot
        write_schedule(settings.schedules_dir, holidays_text(target), name="holidays.yaml")
        assert app.reload()
        assert await app.notices.workdays_changed(now) == 1
        await app.run_until_idle()
        (row,) = await app.store.list_deliveries()
    assert (row.event_id, row.channel, row.source, row.state) == (
        "admin:admin-moved",
        "ops-robot",
        "admin",
        State.SENT,
    )
    assert list((settings.mail_drop_dir / "new").iterdir()) == []  # nobody to mail
    (posted,) = robot.received
    assert posted["msg_type"] == "post" and robot.refused == []
    zh = posted["content"]["post"]["zh_cn"]
    assert zh["title"] == "【系统通知】发送日期调整 / Send dates adjusted"
    lines = ["".join(e["text"] for e in p) for p in zh["content"]]
    before = target - timedelta(days=1)
    assert f"1. 年度报告报送截止日（{target.isoformat()}）当天：{target} → {before}" in lines


async def test_an_admin_template_without_chat_md_posts_its_subject_in_bold_and_text_body(
    make_settings: MakeSettings, platforms: Platforms, monkeypatch: pytest.MonkeyPatch
) -> None:
    robot = platforms.add(point_robot(monkeypatch, platforms, feishu=False))
    settings = make_settings()
    with_admin_templates(settings.templates_dir)
    (settings.templates_dir / REJECTED_TEMPLATE / "chat.md").unlink()
    write_schedule(
        settings.schedules_dir, chat_admins_text(date(2030, 4, 15), "[ops-group, admins]")
    )
    errors = ["schedules/a.yaml: events[0].reminders[0].before: '7x' is not a duration"]
    now = at("2026-04-01T10:00")
    async with App(settings, clock=lambda: now) as app:
        assert await app.notices.reload_rejected(errors, now) == 2  # the group and the mailbox
        assert await app.notices.reload_rejected(errors, now + 60) == 0  # same errors, same day
        await app.run_until_idle()
    content = robot.received[0]["markdown"]["content"]
    assert content.startswith("**【系统通知】日程配置有误，未生效")
    assert "1. schedules/a.yaml: events[0].reminders[0].before: '7x'" in content
    assert len(list((settings.mail_drop_dir / "new").iterdir())) == 1


def test_an_admins_chat_group_with_an_unset_variable_is_a_check_error(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifier.checks import load_config
    from notifier.errors import ConfigError

    monkeypatch.delenv("NOTIFIER_TEST_OPS_URL", raising=False)
    settings = make_settings()
    with_admin_templates(settings.templates_dir)
    write_schedule(settings.schedules_dir, chat_admins_text(date(2030, 4, 15), "ops-group"))
    with pytest.raises(ConfigError) as err:
        load_config(settings, now=datetime(2026, 4, 1, tzinfo=TZ))
    # Used by admins: an error, not the warning of an unused example channel.
    assert any(
        "channels.ops-robot" in e and "NOTIFIER_TEST_OPS_URL is not set" in e
        for e in err.value.errors
    ), err.value.errors


def test_check_renders_the_admin_templates_chat_md_and_names_the_file(
    make_settings: MakeSettings,
) -> None:
    from notifier.checks import load_config
    from notifier.errors import ConfigError

    settings = make_settings()
    with_admin_templates(settings.templates_dir)
    (settings.templates_dir / DIGEST_TEMPLATE / "chat.md").write_text(
        "{{ payload.day.nothing }}", encoding="utf-8"
    )
    write_schedule(settings.schedules_dir, schedule_text(date(2030, 4, 15)))
    with pytest.raises(ConfigError) as err:
        load_config(settings, now=datetime(2026, 4, 1, tzinfo=TZ))
    assert any("admin-digest/chat.md" in e and "nothing" in e for e in err.value.errors)
    (settings.templates_dir / DIGEST_TEMPLATE / "chat.md").unlink()  # the fallback renders
    load_config(settings, now=datetime(2026, 4, 1, tzinfo=TZ))


def test_the_shipped_admin_templates_have_a_chat_md_in_chinese_first() -> None:
    for name in ADMIN_TEMPLATES:
        text = (ROOT / "templates" / name / "chat.md").read_text(encoding="utf-8")
        heading = next(line for line in text.splitlines() if line.startswith("### "))
        assert heading.startswith("### 【系统通知】") and " / " in heading, name


# --- the digest time: NOTIFIER_NOTICES__DIGEST_AT ----------------------------------------


@pytest.mark.parametrize(
    ("now", "digest_at", "expected"),
    [
        ("2026-04-15T07:59", time(8, 0), "2026-04-15T08:00"),
        ("2026-04-15T08:00", time(8, 0), "2026-04-16T08:00"),  # due now: the next is tomorrow
        ("2026-04-15T23:30", time(0, 15), "2026-04-16T00:15"),
        ("2026-12-31T10:00", time(9, 30), "2027-01-01T09:30"),
    ],
)
def test_the_next_digest_is_today_at_its_time_or_tomorrow(
    now: str, digest_at: time, expected: str
) -> None:
    local = datetime.fromisoformat(now).replace(tzinfo=TZ)
    assert next_digest(local, digest_at) == datetime.fromisoformat(expected).replace(tzinfo=TZ)


def test_the_next_digest_keeps_local_time_across_a_daylight_saving_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # 2026-03-29: clocks go from 02:00 to 03:00
    now = datetime(2026, 3, 28, 9, 0, tzinfo=berlin)
    nxt = next_digest(now, time(8, 0))
    assert (nxt.date(), nxt.hour, nxt.utcoffset()) == (date(2026, 3, 29), 8, timedelta(hours=2))


@pytest.mark.parametrize(
    ("value", "expected"), [("09:30", time(9, 30)), ("7:05", time(7, 5)), (" 23:59 ", time(23, 59))]
)
def test_the_digest_time_is_read_from_the_environment_as_hh_mm(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: time
) -> None:
    monkeypatch.setenv("NOTIFIER_NOTICES__DIGEST_AT", value)
    assert Settings(_env_file=None).notices.digest_at == expected  # type: ignore[call-arg]


def test_the_digest_time_defaults_to_eight() -> None:
    assert Settings(_env_file=None).notices.digest_at == time(8, 0)  # type: ignore[call-arg]


@pytest.mark.parametrize("value", ["24:00", "8", "08:60", "0800", "08:00:30", "八点", ""])
def test_a_digest_time_that_is_not_hh_mm_is_refused_naming_the_variable(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from notifier.cli.main import main

    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    result = CliRunner().invoke(main, ["check"], env={"NOTIFIER_NOTICES__DIGEST_AT": value})
    assert result.exit_code == 2
    assert "NOTIFIER_NOTICES__DIGEST_AT" in result.output and "HH:MM" in result.output


async def test_the_digest_waits_for_the_configured_time(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server(Faults(reject={"fazhi@fao.example.com"}, reject_reply=POLICY_REFUSAL))
    settings = make_settings(
        smtp=smtp_settings(server), notices=NoticeSettings(digest_at=time(9, 30))
    )
    with_admin_templates(settings.templates_dir)
    write_schedule(settings.schedules_dir, schedule_text(date(2026, 4, 20)))
    async with App(settings, clock=lambda: at("2026-04-14T10:00")) as app:
        await app.outbox.send_now("report", now=at("2026-04-14T10:00"))
        await app.worker.run_until_idle()
        assert await app.notices.daily_digest(at("2026-04-15T08:30")) == 0  # 08:00 is not it
        assert await app.notices.daily_digest(at("2026-04-15T09:29")) == 0
        assert await app.notices.daily_digest(at("2026-04-15T09:30")) == 1


async def test_the_timer_is_set_for_the_digest_time_when_admins_are_named(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        http=HttpSettings(enabled=False), notices=NoticeSettings(digest_at=time(6, 45))
    )
    with_admin_templates(settings.templates_dir)
    write_schedule(settings.schedules_dir, schedule_text(date(2030, 4, 15)))  # nothing to send
    caplog.set_level(logging.INFO)
    stop, ready = asyncio.Event(), asyncio.Event()
    async with App(settings) as app:
        before = app.now()
        task = asyncio.create_task(app.run(stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 5)
        after = app.now()
        stop.set()
        await asyncio.wait_for(task, 10)
    (timer,) = [r for r in caplog.records if getattr(r, "action", None) == "timer_set"]
    expected = {next_digest(t, time(6, 45)).isoformat() for t in (before, after)}
    assert vars(timer)["digest"] in expected and vars(timer)["jobs"] == 1

"""The `notifier` command as staff use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from notifier.cli.main import main
from tests.conftest import write_schedule


@pytest.fixture
def cli(tmp_path: Path, config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    schedules, templates = config_dirs
    monkeypatch.chdir(tmp_path)  # var/ and .env are relative to the working directory
    env = {
        "NOTIFIER_SCHEDULES_DIR": str(schedules),
        "NOTIFIER_TEMPLATES_DIR": str(templates),
        "NOTIFIER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NOTIFIER_MAIL_DROP_DIR": str(tmp_path / "mail"),
        "NOTIFIER_MAIL_FROM": "notifier@fao.example.com",
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def test_help_is_available_for_every_command(cli) -> None:  # type: ignore[no-untyped-def]
    for command in (
        "run",
        "check",
        "upcoming",
        "preview",
        "send",
        "deliveries",
        "status",
        "retry",
        "migrate",
        "holidays",
    ):
        result = cli(command, "--help")
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_check_passes_and_warns_about_years_without_official_data(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("check")
    assert result.exit_code == 0
    assert "配置有效 OK: 1 events, 1 audiences, 1 hooks, 1 files" in result.output


def test_check_fails_with_every_error_and_exit_1(cli, config_dirs) -> None:  # type: ignore[no-untyped-def]
    schedules, _ = config_dirs
    write_schedule(
        schedules,
        "events:\n  - {id: x, title: X, date: '02-30', reminders: [{before: 7x}]}\n",
        name="bad.yaml",
    )
    result = cli("check")
    assert result.exit_code == 1
    assert "bad.yaml: events[0].date" in result.output
    assert "bad.yaml: events[0].reminders[0].before: '7x' is not a duration" in result.output
    assert "Traceback" not in result.output


def test_upcoming_json_lists_planned_sends_in_the_window(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("upcoming", "--from", "2026-04-01", "--to", "2026-04-30", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [(r["reminder"], r["send_at"]) for r in rows] == [
        ("before-10d", "2026-04-03T09:00:00+08:00"),  # 04-05 is Qingming: moved back
        ("before-3wd", "2026-04-10T09:00:00+08:00"),
        ("on-start", "2026-04-15T09:00:00+08:00"),
    ]
    assert set(rows[0]) == {
        "event", "title", "start", "end", "reminder", "send_at", "audience", "audiences",
        "recipients",
        "provisional", "index", "count",
    }  # fmt: skip
    assert [r["provisional"] for r in rows] == [False, False, False]
    assert rows[0]["recipients"] == 2 and rows[0]["title"] == "全民国家安全教育日"


def test_upcoming_prints_a_readable_table(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("upcoming", "--from", "2026-04-01", "--to", "2026-04-30")
    assert result.exit_code == 0
    assert "3 planned sends" in result.output
    assert "2026-04-03 09:00" in result.output


def test_upcoming_rejects_a_bad_date(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("upcoming", "--from", "2026-13-01")
    assert result.exit_code == 2
    assert "is not a date" in result.output


def test_preview_prints_the_rendered_message(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "preview", "security-day", "--reminder", "before-10d",
        "--recipient", "office@fao.example.com", "--date", "2026-04-15",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "To: 办公室 <office@fao.example.com>" in result.output
    assert "Subject: 【提醒】全民国家安全教育日（2026年4月15日）" in result.output
    assert "提醒：提前10天" in result.output


def test_send_twice_sends_once_unless_again(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = cli("send", "security-day")
    second = cli("send", "security-day")
    third = cli("send", "security-day", "--again")
    assert "已发送 sent 2" in first.output
    assert "Already sent: 0 new of 2" in second.output
    assert "已发送 sent 2" in third.output
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 4
    ledger = cli("deliveries", "--state", "sent")
    assert ledger.exit_code == 0 and ledger.output.count("security") >= 4


def test_send_an_unknown_event_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("send", "no-such-event")
    assert result.exit_code == 1
    assert "unknown event 'no-such-event'" in result.output


def test_migrate_and_retry_report_what_they_did(cli) -> None:  # type: ignore[no-untyped-def]
    migrated = cli("migrate")
    assert migrated.exit_code == 0 and "schema version" in migrated.output
    assert "requeued: 0" in cli("retry").output

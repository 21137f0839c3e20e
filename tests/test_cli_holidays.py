"""`notifier holidays import`: the notice in, a `holidays:` table out (printed or saved)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from notifier.cli.main import main
from tests.conftest import write_schedule

NOTICES = Path(__file__).parent / "fixtures" / "notices"


@pytest.fixture
def cli(tmp_path: Path, config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    schedules, templates = config_dirs
    monkeypatch.chdir(tmp_path)
    env = {"NOTIFIER_SCHEDULES_DIR": str(schedules), "NOTIFIER_TEMPLATES_DIR": str(templates)}

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)

    return invoke


def test_import_prints_the_table_from_a_file_or_stdin(cli) -> None:  # type: ignore[no-untyped-def]
    from_file = cli("holidays", "import", str(NOTICES / "2026.txt"))
    assert from_file.exit_code == 0, from_file.output
    assert '  "2026":' in from_file.output
    assert '      - "2026-02-15..2026-02-23"   # 春节' in from_file.output
    assert '      - "2026-02-28"   # 春节 调休上班' in from_file.output
    text = (NOTICES / "2026.txt").read_text(encoding="utf-8")
    from_stdin = cli("holidays", "import", "-", stdin=text)
    assert from_stdin.exit_code == 0
    assert from_stdin.output.splitlines()[3:] == from_file.output.splitlines()[3:]


def test_import_refuses_a_typo_with_exit_1_naming_the_line(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("holidays", "import", str(NOTICES / "typo-weekday.txt"))
    assert result.exit_code == 1
    assert "cannot import" in result.output and "line 9" in result.output
    assert "日期与星期不符" in result.output


def test_write_saves_the_table_and_runs_check(cli, config_dirs) -> None:  # type: ignore[no-untyped-def]
    schedules, _ = config_dirs
    target = schedules / "holidays-2025.yaml"
    result = cli("holidays", "import", str(NOTICES / "2025.txt"), "--write", str(target))
    assert result.exit_code == 0, result.output
    assert f"已保存 saved {target}: 2025 holidays table" in result.output
    assert "配置有效 OK: 1 events, 2 files" in result.output
    assert '"2025-10-01..2025-10-08"   # 国庆节、中秋节' in target.read_text(encoding="utf-8")


def test_write_keeps_nothing_when_check_fails(cli, config_dirs) -> None:  # type: ignore[no-untyped-def]
    schedules, _ = config_dirs
    write_schedule(
        schedules, "events:\n  - {id: x, title: X, date: '02-30', reminders: []}\n", "b.yaml"
    )
    target = schedules / "holidays-2026.yaml"
    result = cli("holidays", "import", str(NOTICES / "2026.txt"), "--write", str(target))
    assert result.exit_code == 1
    assert f"check failed, {target} not saved" in result.output
    assert "b.yaml: events[0].date" in result.output
    assert not target.exists()


def made_up_notice(year: str) -> str:
    """A notice for any year, without weekdays (so that no weekday check stops it first)."""
    return (
        f"国务院办公厅关于{year}年部分节假日安排的通知\n"
        "一、元旦：1月1日放假，共1天。\n"
        "二、春节：2月5日至11日放假调休，共7天。1月31日上班。\n"
    )


@pytest.mark.parametrize("year", ["9999", "0001", "1999", "2101"])
def test_a_year_outside_2000_to_2100_in_the_text_is_refused_and_nothing_is_written(  # type: ignore[no-untyped-def]
    cli, config_dirs, year: str
) -> None:
    schedules, _ = config_dirs
    target = schedules / f"holidays-{year}.yaml"
    result = cli("holidays", "import", "-", "--write", str(target), stdin=made_up_notice(year))
    assert result.exit_code == 1
    assert f"the year {int(year)} is outside 2000..2100" in result.output
    assert not target.exists()


def test_a_year_outside_2000_to_2100_given_with_year_is_refused(cli) -> None:  # type: ignore[no-untyped-def]
    text = made_up_notice("2027").replace("2027年", "")
    assert cli("holidays", "import", "-", "--year", "2027", stdin=text).exit_code == 0
    result = cli("holidays", "import", "-", "--year", "12027", stdin=text)
    assert result.exit_code == 1 and "the year 12027 is outside 2000..2100" in result.output


def test_write_refuses_to_overwrite_a_file_holding_more_than_that_years_table(  # type: ignore[no-untyped-def]
    cli, config_dirs
) -> None:
    schedules, _ = config_dirs
    target = schedules / "holidays-2026.yaml"
    mine = (
        'holidays:\n  "2026":\n    off: ["2026-01-01"]\n'
        "events:\n  - {id: kept, title: 保留的事件, date: '05-04', reminders: [{on: start}]}\n"
    )
    target.write_text(mine, encoding="utf-8")
    result = cli("holidays", "import", str(NOTICES / "2026.txt"), "--write", str(target))
    assert result.exit_code == 1
    assert f"{target} 已存在且含有 2026 年节假日表以外的内容，未覆盖" in result.output
    assert target.read_text(encoding="utf-8") == mine  # the event is still there
    # Another year's table, and text that is not YAML, are refused the same way.
    for other in ('holidays:\n  "2025":\n    off: ["2025-01-01"]\n', "events: [\n"):
        target.write_text(other, encoding="utf-8")
        result = cli("holidays", "import", str(NOTICES / "2026.txt"), "--write", str(target))
        assert result.exit_code == 1 and "未覆盖" in result.output
        assert target.read_text(encoding="utf-8") == other


def test_write_replaces_a_file_holding_only_that_years_table(cli, config_dirs) -> None:  # type: ignore[no-untyped-def]
    schedules, _ = config_dirs
    target = schedules / "holidays-2026.yaml"
    target.write_text('holidays:\n  2026:\n    off: ["2026-01-01"]\n', encoding="utf-8")
    result = cli("holidays", "import", str(NOTICES / "2026.txt"), "--write", str(target))
    assert result.exit_code == 0, result.output
    again = cli("holidays", "import", str(NOTICES / "2026.txt"), "--write", str(target))
    assert again.exit_code == 0, again.output
    assert '"2026-02-15..2026-02-23"' in target.read_text(encoding="utf-8")


def test_write_never_writes_through_a_symlink(cli, config_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    schedules, _ = config_dirs
    outside = tmp_path / "outside.yaml"
    outside.write_text('holidays:\n  "2026":\n    off: ["2026-01-01"]\n', encoding="utf-8")
    target = schedules / "holidays-2026.yaml"
    target.symlink_to(outside)
    result = cli("holidays", "import", str(NOTICES / "2026.txt"), "--write", str(target))
    assert result.exit_code == 1
    assert f"{target} 是符号链接，不写入" in result.output
    assert outside.read_text(encoding="utf-8") == 'holidays:\n  "2026":\n    off: ["2026-01-01"]\n'
    assert target.is_symlink()


def test_a_check_that_fails_on_a_gbk_template_takes_the_file_back(cli, config_dirs) -> None:  # type: ignore[no-untyped-def]
    schedules, templates = config_dirs
    (templates / "reminder" / "body.txt").write_bytes("请于{{ event.start }}前报送。".encode("gbk"))
    target = schedules / "holidays-2026.yaml"
    result = cli("holidays", "import", str(NOTICES / "2026.txt"), "--write", str(target))
    assert result.exit_code == 1
    assert f"{target} not saved" in result.output
    assert not target.exists()


def test_a_gbk_notice_file_is_refused_naming_it(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gbk = tmp_path / "通知.txt"
    gbk.write_bytes((NOTICES / "2026.txt").read_text(encoding="utf-8").encode("gbk"))
    result = cli("holidays", "import", str(gbk))
    assert result.exit_code == 1
    assert f"cannot import {gbk}: 不是 UTF-8 文本 not UTF-8 text" in result.output

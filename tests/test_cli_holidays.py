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

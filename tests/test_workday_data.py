"""Where the workday data comes from, said plainly; tables over installed data date by date;
the notice for a year sets the December before it."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from notifier.checks import load_config, workday_sources
from notifier.cli.main import main
from notifier.dates.workdays import OFFICIAL_DATA
from notifier.schedule.load import load_schedule
from tests.conftest import MakeSettings, write_schedule

TZ = ZoneInfo("Asia/Shanghai")

# A hand-written 2027 table without 端午, 中秋 and 国庆 (the example).
PARTIAL_2027 = """\
holidays:
  "2027":
    off: ["2027-01-01..2027-01-03", "2027-02-05..2027-02-11", "2027-04-05",
          "2027-05-01..2027-05-05"]
    work: ["2027-02-20"]
"""
# A made-up notice for 2027 whose 元旦 begins on 2026-12-31, a Thursday the installed data works.
NOTICE_2027 = """\
国务院办公厅关于2027年部分节假日安排的通知
一、元旦：2026年12月31日至2027年1月2日放假调休，共3天。2027年1月9日（星期六）上班。
"""


def test_a_partial_table_is_a_check_warning_naming_the_statutory_days_it_leaves_out(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    write_schedule(settings.schedules_dir, PARTIAL_2027, "holidays-2027.yaml")
    schedule, _, warnings = load_config(settings, now=datetime(2026, 12, 1, tzinfo=TZ))
    (line,) = [w for w in warnings if "lists no day of" in w]
    assert line.startswith(f"{settings.schedules_dir / 'holidays-2027.yaml'}: holidays.2027:")
    assert "端午节 2027-06-09; 中秋节 2027-09-15; 国庆节 2027-10-01..2027-10-03" in line
    # ... and date by date they stay days off.
    for day in (date(2027, 6, 9), date(2027, 9, 15), date(2027, 10, 1)):
        assert not schedule.calendar.is_workday(day)


def test_a_table_that_works_a_statutory_holiday_is_a_check_warning(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    write_schedule(
        settings.schedules_dir, 'holidays:\n  "2027": {work: ["2027-10-01"]}\n', "h.yaml"
    )
    _, _, warnings = load_config(settings, now=datetime(2026, 12, 1, tzinfo=TZ))
    assert any(
        "2027-10-01 (国庆节) is a statutory holiday, but the table makes it" in w for w in warnings
    )


def test_a_start_in_a_year_the_installed_data_does_not_know_is_a_loud_warning(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    _, _, warnings = load_config(settings, now=datetime(2027, 3, 1, tzinfo=TZ))
    (loud,) = [w for w in warnings if "NO WORKDAY DATA FOR 2027" in w]
    assert f"the installed {OFFICIAL_DATA} knows no day of 2027" in loud
    assert "schedules/holidays-2027.yaml" in loud
    write_schedule(settings.schedules_dir, PARTIAL_2027, "holidays-2027.yaml")
    _, _, warnings = load_config(settings, now=datetime(2027, 3, 1, tzinfo=TZ))
    assert not [w for w in warnings if "NO WORKDAY DATA" in w]
    _, _, warnings = load_config(settings, now=datetime(2026, 3, 1, tzinfo=TZ))
    assert not [w for w in warnings if "NO WORKDAY DATA" in w]


def test_each_years_source_is_named_with_the_package_version_or_the_file(tmp_path: Path) -> None:
    table = write_schedule(tmp_path, PARTIAL_2027, "holidays-2027.yaml")
    write_schedule(tmp_path, 'holidays:\n  "2026": {off: ["2026-10-09"]}\n', "fix-2026.yaml")
    schedule = load_schedule(tmp_path)
    words = {s.year: (s.kind, s.in_words()) for s in workday_sources(schedule, date(2027, 1, 5))}
    assert list(words) == [2026, 2027, 2028]
    assert words[2026] == (
        "official",
        f"官方数据 official ({OFFICIAL_DATA}) + 配置表逐日覆盖 table {tmp_path / 'fix-2026.yaml'}, "
        "date by date",
    )
    assert OFFICIAL_DATA.startswith("chinese-calendar 1.")
    assert words[2027] == ("config", f"配置表 config table ({table})")
    assert words[2028][0] == "provisional" and "Monday-Friday" in words[2028][1]


def test_check_prints_where_each_years_data_comes_from(
    config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules, templates = config_dirs
    env = {"NOTIFIER_SCHEDULES_DIR": str(schedules), "NOTIFIER_TEMPLATES_DIR": str(templates)}
    result = CliRunner().invoke(main, ["check"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    year = datetime.now(TZ).year
    assert f"工作日数据 workday data {year - 1}: " in result.output
    assert f"工作日数据 workday data {year + 1}: " in result.output


def test_an_imported_notice_sets_the_december_before_its_year_over_the_installed_data(
    config_dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules, templates = config_dirs
    env = {"NOTIFIER_SCHEDULES_DIR": str(schedules), "NOTIFIER_TEMPLATES_DIR": str(templates)}
    notice = tmp_path / "notice.txt"
    notice.write_text(NOTICE_2027, encoding="utf-8")
    target = schedules / "holidays-2027.yaml"
    result = CliRunner().invoke(
        main, ["holidays", "import", str(notice), "--write", str(target)], env=env
    )
    assert result.exit_code == 0, result.output
    calendar = load_schedule(schedules).calendar
    assert not calendar.is_workday(date(2026, 12, 31))  # the installed data says work
    assert calendar.is_workday(date(2027, 1, 9))
    assert calendar.is_workday(date(2026, 12, 30))


def test_the_next_years_table_wins_a_december_day_and_says_so(tmp_path: Path) -> None:
    write_schedule(tmp_path, 'holidays:\n  "2026": {work: ["2026-12-31"]}\n', "a.yaml")
    write_schedule(tmp_path, 'holidays:\n  "2027": {off: ["2026-12-31..2027-01-01"]}\n', "b.yaml")
    schedule = load_schedule(tmp_path)
    assert not schedule.calendar.is_workday(date(2026, 12, 31))
    (line,) = [w for w in schedule.warnings if "2026-12-31" in w]
    assert "the 2027 table wins: the notice for 2027 sets it" in line

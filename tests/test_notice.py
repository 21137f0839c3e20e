"""The State Council's notice, read: the real 2024-2026 notices against chinese-calendar."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest
import yaml

from notifier.dates.holiday_notice import NoticeError, notice_yaml, parse_notice
from notifier.dates.workdays import parse_holiday_table
from notifier.schedule.model import _YamlLoader as YamlLoader
from notifier.schedule.model import load_schedule

NOTICES = Path(__file__).parent / "fixtures" / "notices"
# Full-width punctuation, as a web copy with ASCII would print it.
TO_ASCII = str.maketrans({"：": ": ", "，": ", ", "。": ". ", "（": "(", "）": ")"})


def read(name: str) -> str:
    return (NOTICES / name).read_text(encoding="utf-8")


def workdays_from_table(text: str, year: int) -> dict[date, bool]:
    """Every day of `year` by the imported table alone (Monday-Friday where it says nothing)."""
    data = yaml.load(text, Loader=YamlLoader)  # the schedules' loader: `off:` is not False
    overrides, years = parse_holiday_table(data["holidays"])
    assert years == {year}
    first = date(year, 1, 1)
    days = [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]
    return {d: overrides.get(d, d.weekday() < 5) for d in days}


@pytest.mark.parametrize(
    ("name", "year", "ascii"),
    [
        ("2024.txt", 2024, False),
        ("2025.txt", 2025, False),
        ("2026.txt", 2026, False),
        ("2025-ascii.txt", 2025, False),
        ("2024.txt", 2024, True),
        ("2026.txt", 2026, True),
    ],
)
def test_the_real_notices_agree_with_chinese_calendar_on_every_day(
    name: str, year: int, ascii: bool
) -> None:
    text = read(name)
    if ascii:
        text = text.translate(TO_ASCII)
    notice = parse_notice(text)
    assert notice.year == year
    table = workdays_from_table(notice_yaml(notice, source=name), year)
    wrong = [d for d, work in table.items() if work != chinese_calendar.is_workday(d)]
    assert wrong == []
    assert len(table) in (365, 366)


def test_the_printed_table_is_a_valid_schedule_file(tmp_path: Path) -> None:
    (tmp_path / "holidays-2026.yaml").write_text(
        notice_yaml(parse_notice(read("2026.txt"))), encoding="utf-8"
    )
    schedule = load_schedule(tmp_path)
    assert schedule.calendar.has_official_data(2026)
    assert schedule.calendar.is_workday(date(2026, 2, 28))  # a make-up Saturday
    assert not schedule.calendar.is_workday(date(2026, 2, 16))


def test_ranges_across_months_single_days_and_combined_holidays_are_read() -> None:
    notice = parse_notice(read("2025.txt"))
    by_name = {h.name: h for h in notice.holidays}
    assert list(by_name) == ["元旦", "春节", "清明节", "劳动节", "端午节", "国庆节、中秋节"]
    assert by_name["元旦"].off == (date(2025, 1, 1),) and by_name["元旦"].work == ()
    spring = by_name["春节"]
    assert (spring.off[0], spring.off[-1], len(spring.off)) == (
        date(2025, 1, 28),
        date(2025, 2, 4),
        8,
    )
    assert spring.work == (date(2025, 1, 26), date(2025, 2, 8))
    assert by_name["端午节"].off == (date(2025, 5, 31), date(2025, 6, 1), date(2025, 6, 2))
    assert notice.table()["2025"]["work"] == [
        "2025-01-26",
        "2025-02-08",
        "2025-04-27",
        "2025-09-28",
        "2025-10-11",
    ]


def test_a_wrong_weekday_is_refused_naming_the_line() -> None:
    with pytest.raises(NoticeError) as caught:
        parse_notice(read("typo-weekday.txt"))
    message = str(caught.value)
    assert message.startswith("line 9 (二、春节：2月15日（农历腊月二十八、周一）")
    assert "2月15日 is a 周日, but the notice says 周一" in message


def test_an_impossible_date_is_refused_naming_the_line() -> None:
    with pytest.raises(NoticeError, match=r"line 9 .*2026年2月30日 does not exist"):
        parse_notice(read("typo-date.txt"))


def test_a_day_count_that_does_not_match_the_range_is_refused() -> None:
    text = read("2026.txt").replace("放假调休，共9天", "放假调休，共8天")
    with pytest.raises(NoticeError, match=r"line 9 .*2026-02-15\.\.2026-02-23 is 9 days.*共8天"):
        parse_notice(text)


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    text = "国务院办公厅关于2027年部分节假日安排的通知\n一、劳动节：5月5日至1日放假调休，共5天。\n"
    with pytest.raises(NoticeError, match=r"line 2 .*ends .* before it starts"):
        parse_notice(text)


def test_text_that_is_not_a_notice_is_refused() -> None:
    with pytest.raises(NoticeError, match="not a State Council holiday notice"):
        parse_notice(read("not-a-notice.txt"))
    with pytest.raises(NoticeError, match="not a State Council holiday notice"):
        parse_notice("")


def test_a_notice_without_its_title_needs_the_year() -> None:
    body = "一、元旦：1月1日（周五）放假1天，不调休。\n"
    with pytest.raises(NoticeError, match="does not name its year"):
        parse_notice(body)
    assert parse_notice(body, year=2027).table() == {"2027": {"off": ["2027-01-01"], "work": []}}
    with pytest.raises(NoticeError, match=r"line 1 .*1月1日 is a 周五, but the notice says 周四"):
        parse_notice(body.replace("周五", "周四"), year=2027)

"""The State Council's notice, read: the real 2024-2026 notices against chinese-calendar."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest
import yaml

from notifier.dates.holiday_notice import NoticeError, notice_yaml, parse_notice
from notifier.dates.workdays import parse_holiday_table
from notifier.schedule.files import _YamlLoader as YamlLoader
from notifier.schedule.load import load_schedule

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


def test_a_clause_the_reader_does_not_know_is_refused_naming_it_never_skipped() -> None:
    text = (
        "国务院办公厅关于2016年部分节假日安排的通知\n"
        "四、劳动节：5月1日放假，5月2日（星期一）另行安排。\n"
    )
    with pytest.raises(NoticeError, match=r"line 2 .*cannot read '5月2日\(星期一\)另行安排'"):
        parse_notice(text)


def test_a_weekday_off_in_lieu_bu_xiu_is_a_day_off() -> None:
    notice = parse_notice(
        "国务院办公厅关于2016年部分节假日安排的通知\n四、劳动节：5月1日放假，5月2日（星期一）补休。\n"
    )
    assert notice.table() == {"2016": {"off": ["2016-05-01..2016-05-02"], "work": []}}


def test_the_days_of_the_previous_december_are_in_the_table_and_said_in_the_file() -> None:
    text = (
        "国务院办公厅关于2019年部分节假日安排的通知\n"
        "一、元旦：2018年12月30日至2019年1月1日放假调休，共3天。2018年12月29日（星期六）上班。\n"
    )
    notice = parse_notice(text)
    assert notice.table() == {"2019": {"off": ["2018-12-30..2019-01-01"], "work": ["2018-12-29"]}}
    written = notice_yaml(notice)
    assert "2018年12月的日期由本通知设定，逐日覆盖2018年的数据" in written
    assert "add it to the 2018 table" not in written


def test_a_december_date_without_its_year_in_the_new_year_item_is_the_december_before() -> None:
    text = (
        "国务院办公厅关于2008年部分节假日安排的通知\n"
        "一、元旦：12月30日至1月1日放假，共3天。12月29日（星期六）上班。\n"
    )
    notice = parse_notice(text)
    assert notice.table() == {"2008": {"off": ["2007-12-30..2008-01-01"], "work": ["2007-12-29"]}}


def test_a_date_outside_the_notices_year_and_the_december_before_is_refused() -> None:
    text = (
        "国务院办公厅关于2026年部分节假日安排的通知\n"
        "七、国庆节：10月1日至7日放假调休，共7天。2027年1月9日（周六）上班。\n"
    )
    with pytest.raises(NoticeError, match=r"line 2 .*2027-01-09 is outside 2026"):
        parse_notice(text)


def test_an_item_broken_over_lines_is_read_whole_and_a_stray_dated_line_is_refused() -> None:
    title = "国务院办公厅关于2009年部分节假日安排的通知\n"
    broken = (
        "一、元旦：1月1日至3日放假，共3天。\n"
        "其中，1月1日（星期四、新年）为法定节假日，1月3日（星期六）为公休日。\n"
        "1月4日（星期日）公休日调至1月2日（星期五）。\n\n"
        "国务院办公厅\n2008年12月10日\n"
    )
    notice = parse_notice(title + broken)
    assert notice.table() == {"2009": {"off": ["2009-01-01..2009-01-03"], "work": ["2009-01-04"]}}
    stray = broken.replace("国务院办公厅\n", "另：2009年5月31日（星期日）上班。\n")
    with pytest.raises(NoticeError, match=r"line 6 .*days outside a numbered holiday item"):
        parse_notice(title + stray)


def test_advice_is_kept_but_sets_no_day_off() -> None:
    notice = parse_notice(read("2024.txt"))
    spring = next(h for h in notice.holidays if h.name == "春节")
    assert spring.advice == ("2024-02-09: 鼓励各单位结合带薪年休假等制度落实,安排职工在除夕休息",)
    assert date(2024, 2, 9) not in spring.off
    assert "advice, not a day off: 2024-02-09" in notice_yaml(notice)

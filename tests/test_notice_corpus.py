"""The real notices, 2007-2026: every holiday item reads into exactly the days it sets, and those
days agree with the installed official data (chinese-calendar) for every year it covers.

The corpus (fixtures/notices/corpus.yaml) gives each item's days as written in the text; the
official data is the truth test of the transcription.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest
import yaml

from notifier.dates.holiday_notice import HolidayNotice, parse_notice

CORPUS: dict[str, list[dict[str, object]]] = yaml.safe_load(
    (Path(__file__).parent / "fixtures" / "notices" / "corpus.yaml").read_text(encoding="utf-8")
)
YEARS = sorted(int(y) for y in CORPUS)
# Full-width punctuation, as a web copy with ASCII would print it.
TO_ASCII = str.maketrans({"：": ": ", "，": ", ", "。": ". ", "（": "(", "）": ")", "；": "; "})
# Days set by State Council notices other than the annual ones (the installed data has them):
# the 70th anniversary of the victory in the War of Resistance (国务院关于中国人民抗日战争暨世界
# 反法西斯战争胜利70周年纪念日调休放假的通知), the 2019 Labour Day adjustment (关于调整2019年
# 劳动节假期安排的通知) and the 2020 Spring Festival extension (关于延长2020年春节假期的通知).
SPECIAL: dict[date, bool] = {
    date(2015, 9, 3): False,
    date(2015, 9, 4): False,
    date(2015, 9, 6): True,
    date(2019, 4, 28): True,
    date(2019, 5, 2): False,
    date(2019, 5, 3): False,
    date(2019, 5, 5): True,
    date(2020, 1, 31): False,
    date(2020, 2, 1): False,  # the annual notice's make-up Saturday, cancelled by the extension
    date(2020, 2, 2): False,
}
FIRST_OFFICIAL = 2004  # chinese-calendar 1.11.0 covers 2004-2026


def days(items: object) -> list[date]:
    assert isinstance(items, list)
    out: list[date] = []
    for item in items:
        first, _, last = str(item).partition("..")
        start, end = date.fromisoformat(first), date.fromisoformat(last or first)
        out += [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return out


def notice_text(year: int, *, ascii: bool = False) -> str:
    lines = [f"国务院办公厅关于{year}年部分节假日安排的通知", ""]
    lines += [str(item["text"]) for item in CORPUS[str(year)]]
    text = "\n".join(lines) + "\n"
    return text.translate(TO_ASCII) if ascii else text


def official_covers(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


def set_days(year: int) -> dict[date, bool]:
    """What the corpus's notice for `year` sets: day -> workday."""
    out: dict[date, bool] = {}
    for item in CORPUS[str(year)]:
        out.update(dict.fromkeys(days(item["days_off"]), False))
        out.update(dict.fromkeys(days(item["workdays"]), True))
    return out


@pytest.mark.parametrize("ascii", [False, True], ids=["full-width", "ascii"])
@pytest.mark.parametrize("year", YEARS)
def test_every_item_of_the_real_notice_reads_into_exactly_its_days(year: int, ascii: bool) -> None:
    notice = parse_notice(notice_text(year, ascii=ascii))
    assert notice.year == year
    items = CORPUS[str(year)]
    assert len(notice.holidays) == len(items)
    for holiday, item in zip(notice.holidays, items, strict=True):
        assert (holiday.name, list(holiday.off), list(holiday.work)) == (
            holiday.name,
            days(item["days_off"]),
            days(item["workdays"]),
        ), item["text"]
        advised = [a.partition(":")[0] for a in holiday.advice]
        assert advised == item.get("advice", [])


@pytest.mark.parametrize("year", [y for y in YEARS if official_covers(y)])
def test_the_days_of_each_notice_agree_with_the_official_data(year: int) -> None:
    """Both ways: each day the notice sets is what the official data says, and each day of the
    year that the official data makes other than Monday-Friday is set by the notice (or by the
    next year's notice, for its December, or by a special notice)."""
    notice = set_days(year)
    wrong = [
        (d, w)
        for d, w in notice.items()
        if d not in SPECIAL and bool(chinese_calendar.is_workday(d)) != w
    ]
    assert wrong == []
    covered = dict(notice)
    if str(year + 1) in CORPUS:
        covered |= {d: w for d, w in set_days(year + 1).items() if d.year == year}
    first = date(year, 1, 1)
    missed = []
    for i in range((date(year + 1, 1, 1) - first).days):
        day = first + timedelta(days=i)
        official = bool(chinese_calendar.is_workday(day))
        if official == (day.weekday() < 5):
            continue
        if day in SPECIAL:
            assert SPECIAL[day] == official
        elif covered.get(day) != official:
            missed.append((day, official))
    assert missed == []


def test_the_corpus_holds_every_annual_notice_since_2007() -> None:
    assert YEARS == list(range(2007, 2027))
    assert sum(len(CORPUS[str(y)]) for y in YEARS) == 131
    assert all(official_covers(y) for y in YEARS) and FIRST_OFFICIAL <= YEARS[0]


def test_the_2019_notice_sets_december_2018_in_its_own_table() -> None:
    notice: HolidayNotice = parse_notice(notice_text(2019))
    assert notice.table()["2019"]["off"][0] == "2018-12-30..2019-01-01"
    assert notice.table()["2019"]["work"][0] == "2018-12-29"
    assert [(d.isoformat(), w) for d, w, _ in notice.elsewhere] == [
        ("2018-12-29", True),
        ("2018-12-30", False),
        ("2018-12-31", False),
    ]

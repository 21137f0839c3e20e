"""Read the State Council's holiday notice (国务院办公厅关于20XX年部分节假日安排的通知) into a
`holidays:` table. Pure, text in and table out, apart from `write_table` (and its check,
`table_file_problem`), which saves the table for both the CLI and the console and can take
the save back.

The notice is one sentence group per holiday, e.g.
"二、春节：2月15日（农历腊月二十八、周日）至23日（农历正月初七、周一）放假调休，共9天。2月14日（周六）、
2月28日（周六）上班。" Copies print it with full-width or ASCII punctuation; both read the same
(NFKC folds full-width forms). What is checked, so that a typo is refused rather than planned:
every date exists, a weekday written beside a date is that date's weekday, "共N天" matches the
range, a range does not end before it starts, and no day is both off and a workday. Each
refusal names the line.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import yaml

__all__ = [
    "NOTICE_YEARS",
    "Holiday",
    "HolidayNotice",
    "NoticeError",
    "TableFileError",
    "notice_yaml",
    "parse_notice",
    "table_file_problem",
    "write_table",
]

# The years a notice may be for (the console's year field has always taken these): a year far
# off is a typo in the title ("9999", "0001") and must not become a table.
NOTICE_YEARS = range(2000, 2101)

_NAMES = ("元旦", "春节", "清明节", "劳动节", "端午节", "中秋节", "国庆节")
_NAME = "|".join(_NAMES)
_ITEM = re.compile(
    rf"([一二三四五六七八九十]+)\s*[、.,]\s*((?:{_NAME})(?:\s*[、,和与及]\s*(?:{_NAME}))*)\s*:"
)
_YEAR_TITLE = re.compile(r"(\d{4})\s*年\s*部分节假日安排")
_YEAR_BODY = re.compile(r"现将\s*(\d{4})\s*年")


def _date_re(prefix: str) -> str:
    return (
        rf"(?:(?P<{prefix}y>\d{{4}})\s*年\s*)?(?:(?P<{prefix}m>\d{{1,2}})\s*月\s*)?"
        rf"(?P<{prefix}d>\d{{1,2}})\s*日(?:\s*\((?P<{prefix}a>[^)]*)\))?"
    )


_OFF = re.compile(_date_re("s") + r"(?:\s*(?:至|到|-|~)\s*" + _date_re("e") + r")?\s*放假")
_DAY = re.compile(_date_re("w"))
_COUNT = re.compile(r"(?:共|放假)\s*(\d+)\s*天")
_WEEKDAY = re.compile(r"(?:周|星期|礼拜)([一二三四五六日天])")
_WEEKDAYS = "一二三四五六日"
_SENTENCE_END = re.compile(r"[。.;；]")


class NoticeError(ValueError):
    """The text is not a holiday notice, or one of its lines says something impossible."""


@dataclass(frozen=True, slots=True)
class Holiday:
    """One line of the notice: a holiday's days off and its make-up workdays (调休上班)."""

    name: str
    line: int
    off: tuple[date, ...]
    work: tuple[date, ...]


@dataclass(frozen=True, slots=True)
class HolidayNotice:
    year: int
    holidays: tuple[Holiday, ...]
    # Days the notice dates in another year (e.g. "2022年12月31日" in the 2023 notice): not in
    # this year's table, listed so that nobody loses them.
    elsewhere: tuple[tuple[date, bool, str], ...] = field(default=())

    def table(self) -> dict[str, dict[str, list[str]]]:
        """`{"2027": {"off": [...], "work": [...]}}`, ranges folded ("A..B"), sorted."""
        off = sorted({d for h in self.holidays for d in h.off if d.year == self.year})
        work = sorted({d for h in self.holidays for d in h.work if d.year == self.year})
        return {str(self.year): {"off": _fold(off), "work": _fold(work)}}


def _fold(days: list[date]) -> list[str]:
    """Consecutive days as "A..B", single days as "A"."""
    out: list[str] = []
    run: list[date] = []
    for day in days:
        if run and day != run[-1] + timedelta(days=1):
            out.append(_span(run))
            run = []
        run.append(day)
    if run:
        out.append(_span(run))
    return out


def _span(run: list[date]) -> str:
    return run[0].isoformat() if len(run) == 1 else f"{run[0].isoformat()}..{run[-1].isoformat()}"


def _normalise(text: str) -> str:
    # NFKC: full-width digits, colons, commas and parentheses become ASCII ("（" -> "(");
    # "、" and "。" stay. A BOM or a no-break space from a web page goes too.
    return unicodedata.normalize("NFKC", text).replace("\ufeff", "")


def _find_year(text: str) -> int | None:
    years = {int(m.group(1)) for m in _YEAR_TITLE.finditer(text)}
    years |= {int(m.group(1)) for m in _YEAR_BODY.finditer(text)}
    if len(years) > 1:
        raise NoticeError(f"the notice names more than one year: {sorted(years)}")
    return years.pop() if years else None


def _segments(lines: list[str]) -> list[tuple[int, str, str]]:
    """(line number, holiday names, text) of each numbered holiday item."""
    out: list[tuple[int, str, str]] = []
    for number, line in enumerate(lines, start=1):
        starts = list(_ITEM.finditer(line))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(line)
            names = re.sub(r"\s*[,和与及]\s*", "、", match.group(2))
            out.append((number, names, line[match.end() : end]))
    return out


class _Line:
    """Reads the dates of one holiday line, refusing with the line's number and text."""

    def __init__(self, number: int, names: str, text: str, year: int, original: str) -> None:
        self.number, self.names, self.text, self.year = number, names, text.strip(), year
        self.original = original.strip()

    def fail(self, problem: str) -> NoticeError:
        return NoticeError(f"line {self.number} ({self.original[:70]}): {problem}")

    def day(self, match: re.Match[str], prefix: str, month: int | None) -> date:
        y, m, d = (match.group(prefix + k) for k in "ymd")
        year = int(y) if y else self.year
        month_n = int(m) if m else month
        if month_n is None:
            raise self.fail(f"{d}日: no month given")
        try:
            day = date(year, month_n, int(d))
        except ValueError:
            raise self.fail(f"{year}年{month_n}月{d}日 does not exist (日期不存在)") from None
        note = match.group(prefix + "a")
        written = _WEEKDAY.search(note) if note else None
        if written is not None:
            said = _WEEKDAYS.index("日" if written.group(1) == "天" else written.group(1))
            if said != day.weekday():
                raise self.fail(
                    f"{month_n}月{day.day}日 is a 周{_WEEKDAYS[day.weekday()]}, but the notice "
                    f"says 周{_WEEKDAYS[said]} (日期与星期不符)"
                )
        return day

    def read(self) -> Holiday:
        off: list[date] = []
        work: list[date] = []
        for sentence in _SENTENCE_END.split(self.text):
            if "放假" in sentence:
                off.extend(self._off(sentence))
            if "上班" in sentence:
                month: int | None = None
                for match in _DAY.finditer(sentence.partition("上班")[0]):
                    day = self.day(match, "w", month)
                    month = day.month
                    work.append(day)
        if not off:
            raise self.fail("no days off found (expected '…日放假…')")
        both = sorted(set(off) & set(work))
        if both:
            raise self.fail(f"{both[0]} is both a day off and a workday")
        return Holiday(self.names, self.number, tuple(off), tuple(work))

    def _off(self, sentence: str) -> list[date]:
        match = _OFF.search(sentence)
        if match is None:
            raise self.fail("cannot read the days off (expected '…月…日至…日放假')")
        first = self.day(match, "s", None)
        last = self.day(match, "e", first.month) if match.group("ed") else first
        if last < first:
            raise self.fail(f"the range ends ({last}) before it starts ({first})")
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        count = _COUNT.search(sentence[match.end() - 2 :])
        if count is not None and int(count.group(1)) != len(days):
            raise self.fail(
                f"{first}..{last} is {len(days)} days, but the notice says 共{count.group(1)}天"
            )
        return days


def parse_notice(text: str, *, year: int | None = None) -> HolidayNotice:
    """Parse the notice; `year` is needed only when the text does not name its year.

    Raises NoticeError: not a notice (no numbered holiday lines), no year, or a line that
    names an impossible date, a wrong weekday, a wrong day count or a reversed range.
    """
    normal = _normalise(text)
    found = _find_year(normal)
    if year is not None and found is not None and year != found:
        raise NoticeError(f"the notice is for {found}, not {year}")
    lines = normal.splitlines()
    segments = _segments(lines)
    if not segments:
        raise NoticeError(
            "not a State Council holiday notice: no line such as '一、元旦：1月1日（周五）放假…' "
            "(不是国务院办公厅节假日安排通知)"
        )
    year = year or found
    if year is None:
        raise NoticeError(
            "the notice does not name its year (no '国务院办公厅关于20XX年部分节假日安排的通知'): "
            "give it with --year"
        )
    if year not in NOTICE_YEARS:
        raise NoticeError(
            f"年份 {year} 不在 {NOTICE_YEARS[0]}–{NOTICE_YEARS[-1]} 之间 the year {year} is "
            f"outside {NOTICE_YEARS[0]}..{NOTICE_YEARS[-1]}: check the notice's title or --year"
        )
    originals = text.splitlines()
    if len(originals) != len(lines):  # NFKC never joins lines, but keep the messages right
        originals = lines
    holidays = [
        _Line(number, names, body, year, originals[number - 1]).read()
        for number, names, body in segments
    ]
    seen: dict[date, tuple[bool, str]] = {}
    for h in holidays:
        for day, work in [*((d, False) for d in h.off), *((d, True) for d in h.work)]:
            if day in seen and seen[day][0] != work:
                raise NoticeError(
                    f"line {h.line} ({h.name}): {day} is also listed by {seen[day][1]} "
                    "the other way (both off and a workday)"
                )
            seen[day] = (work, h.name)
    elsewhere = tuple(sorted((d, w, n) for d, (w, n) in seen.items() if d.year != year))
    return HolidayNotice(year, tuple(holidays), elsewhere)


def notice_yaml(notice: HolidayNotice, *, source: str = "") -> str:
    """The `holidays:` table as a schedule file, one commented line per holiday."""
    year = str(notice.year)
    names: dict[str, str] = {}
    for h in notice.holidays:
        for item in _fold(sorted(d for d in h.off if d.year == notice.year)):
            names[item] = h.name
        for item in _fold(sorted(d for d in h.work if d.year == notice.year)):
            names.setdefault(item, h.name)
        for d in h.work:
            names.setdefault(d.isoformat(), h.name)
    table = notice.table()[year]
    out = [
        f"# 国务院办公厅关于{year}年部分节假日安排的通知，由 `notifier holidays import` 生成。",
        f"# The State Council's holiday notice for {year}, imported by `notifier holidays import`"
        + (f" from {source}" if source else "")
        + ".",
        "# 请与通知原文核对后保存在 schedules/ 下 / check it against the notice, then keep it in "
        "schedules/.",
    ]
    for day, work, name in notice.elsewhere:
        out.append(
            f"# {day.isoformat()}（{name}）{'上班' if work else '放假'}: not in {year}; add it to "
            f"the {day.year} table if that year has none"
        )
    out += ["holidays:", f'  "{year}":', "    off:"]
    out += [f'      - "{item}"   # {names.get(item, "")}' for item in table["off"]]
    out.append("    work:" if table["work"] else "    work: []")
    for item in table["work"]:
        label = names.get(item) or names.get(item.partition("..")[0], "")
        out.append(f'      - "{item}"   # {label} 调休上班')
    return "\n".join(out) + "\n"


class TableFileError(Exception):
    """The import may not write its file: it holds other content, or is a link."""


def table_file_problem(path: Path, year: int, *, within: Path | None = None) -> str | None:
    """Why the import must not write `path` (None: it may).

    The import replaces only a file it could have written itself: absent, empty, or holding
    nothing but a `holidays:` table for `year`; anything else (an event, another year's table)
    would vanish. It never writes through a link, and with `within` the file must be in that
    directory.
    """
    if path.is_symlink():
        return f"{path} 是符号链接，不写入 is a symbolic link: the import does not write through it"
    if within is not None and not path.resolve().is_relative_to(within.resolve()):
        return f"{path} 不在 {within} 中 is outside {within}"
    if not path.exists():
        return None
    refused = (
        f"{path} 已存在且含有 {year} 年节假日表以外的内容，未覆盖 exists and holds more than "
        f"the {year} holidays table: not overwritten (move or remove it first)"
    )
    if not path.is_file():
        return refused
    if path.stat().st_nlink > 1:  # the same file is also elsewhere: writing would change it there
        return f"{path} 有其他硬链接，不写入 has other hard links: not overwritten"
    try:
        text = path.read_bytes().decode("utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return refused
    if data is None and not text.strip():
        return None
    if not isinstance(data, dict) or set(data) != {"holidays"}:
        return refused
    table = data["holidays"]
    if not isinstance(table, dict) or set(map(str, table)) != {str(year)}:
        return refused
    return None


def _write(path: Path, data: bytes) -> None:
    # O_NOFOLLOW: a link put in place after the check is refused (ELOOP), not written through.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_table(
    path: Path, text: str, *, year: int, within: Path | None = None
) -> Callable[[], None]:
    """Save an imported table at `path`; the function returned takes the save back (the file
    as it was, or no file), for when the check refuses the result.

    Raises TableFileError (see `table_file_problem`), or OSError."""
    problem = table_file_problem(path, year, within=within)
    if problem is not None:
        raise TableFileError(problem)
    previous = path.read_bytes() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text.encode("utf-8"))

    def undo() -> None:
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            _write(path, previous)

    return undo

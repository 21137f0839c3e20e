"""Read the State Council's holiday notice (国务院办公厅关于20XX年部分节假日安排的通知) into a
`holidays:` table. Pure, text in and table out, apart from `write_table` (and its check,
`table_file_problem`), which saves the table for both the CLI and the console and can take
the save back.

The notice is one numbered item per holiday, e.g. "二、春节：2月15日（农历腊月二十八、周日）至
23日（农历正月初七、周一）放假调休，共9天。2月14日（周六）、2月28日（周六）上班。" Every
phrasing the notices have used since 2007 reads: ranges with 至, —, －, ~; an end day (or
any later day) without its month; 补休; 与周末连休; 不调休; the old "其中，…为法定节假日，…照常
公休，…公休日调至…" sentences; a 元旦 that begins in the previous December. Copies print it
with full-width or ASCII punctuation; both read the same (NFKC folds full-width forms).

Each item is cut into clauses (at "，", "；", "。" outside parentheses), and every clause is
either one of the known kinds or the import is refused naming it: a clause is never skipped,
so an unknown phrasing cannot silently lose a day off. Also checked, so that a typo is refused
rather than planned: every date exists, a weekday written beside a date is that date's weekday,
"共N天" matches the range, a range does not end before it starts, no day is both off and a
workday, and every date lies in the notice's year or the December before it.
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

# The holiday names as the notices write them (2007-2008: "“五一”", "“十一”", "“五一”国际劳动节").
_NAME = (
    r"元旦|春节|清明节|(?:[“\"]五一[”\"])?国际劳动节|[“\"]五一[”\"]|劳动节|端午节|中秋节|国庆节"
    r"|[“\"]十一[”\"]"
)
_CANONICAL = {"五一": "劳动节", "国际劳动节": "劳动节", "十一": "国庆节"}
_CANONICAL["五一国际劳动节"] = "劳动节"
_ITEM = re.compile(
    rf"([一二三四五六七八九十]+)\s*[、.,]\s*((?:{_NAME})(?:\s*[、,和与及]\s*(?:{_NAME}))*)"
    r"\s*(?::\s*|(?=\d))"
)
_YEAR_TITLE = re.compile(r"(\d{4})\s*年\s*部分节假日安排")
_YEAR_BODY = re.compile(r"现将\s*(\d{4})\s*年")
# A line after a holiday item that goes on with it (a copy that breaks the item's sentences
# onto lines of their own), and one that dates days outside any item: refused, not skipped.
_GOES_ON = re.compile(r"\s*(?:其中|将|\d{1,2}\s*月\s*\d{1,2}\s*日|\d{1,2}\s*日)")
_DATED_DAYS = re.compile(r"\d{1,2}\s*月\s*\d{1,2}\s*日.*(?:放假|上班|补休|调至|公休)")
# The notice's closing paragraph, when a copy runs it on from the last item's line.
_CLOSING = re.compile(r"节假日期间")


def _date_re(prefix: str) -> str:
    return (
        rf"(?:(?P<{prefix}y>\d{{4}})年)?(?:(?P<{prefix}m>\d{{1,2}})月)?"
        rf"(?P<{prefix}d>\d{{1,2}})日(?:\((?P<{prefix}a>[^()]*)\))?"
    )


# A range: the notices write 至 (and 到), older ones a dash: —, －, -, ~ (after NFKC).
_RANGE_SEP = r"(?:至|到|—+|–|-|~|〜|−)"
_SPAN = re.compile(_date_re("s") + rf"(?:{_RANGE_SEP}" + _date_re("e") + ")?")
_DAY = re.compile(_date_re("w"))
_WEEKDAY = re.compile(r"(?:周|星期|礼拜)([一二三四五六日天])")
_WEEKDAYS = "一二三四五六日"
_NUMBER = r"(\d+|[一二两三四五六七八九十]+)"
_NUMERALS = {c: i for i, c in enumerate("一二三四五六七八九十", start=1)} | {"两": 2}
# A list of days or ranges ("2月14日（周六）、2月28日（周六）") stands as "L" in the clause's shape.
_LIST_JOIN = ("、", "和")


def _kinds() -> list[tuple[str, re.Pattern[str]]]:
    """Every kind of clause the notices use, as the clause's shape with its lists as "L"."""
    names = r"(?:国庆节|中秋节|春节|元旦|清明节|劳动节|端午节)"
    return [
        # "1月1日至3日放假调休" "5月1日放假" "1月1日放假1天" "1月1日至3日放假公休"
        ("off", re.compile(rf"(?:其中)?L(?:放假|调休放假)(?:调休|公休)?(?:{_NUMBER}天)?")),
        ("count", re.compile(rf"共{_NUMBER}天")),
        # "2月14日（周六）、2月28日（周六）上班"
        ("work", re.compile(r"(?:其中)?L(?:正常|照常)?上班")),
        # "5月2日（星期一）补休": a weekday off for a holiday on a weekend.
        ("off", re.compile(r"L补休")),
        # 2007-2009: "2月9日（星期六）、2月10日（星期日）照常公休", "1月3日（星期六）为公休日"
        ("off", re.compile(r"(?:其中)?L(?:照常公休|为公休日)")),
        # "其中，1月1日为法定节假日", "…为国庆节法定节假日", 2007: "…为法定假日"
        ("off", re.compile(rf"(?:其中)?L为{names}?法定节?假日")),
        # "12月29日（星期六）公休日调至12月31日（星期一）", "将…两个公休日分别调至…",
        # "10月3日（星期六）公休日及中秋节分别调至…": the weekend days move onto the days
        # after 调至.
        (
            "shift",
            re.compile(rf"(?:其中)?将?L(?:[两二三四五六七]个)?公休日(?:及{names})?(?:分别)?调至L"),
        ),
        # Add no day: the days off are given by the range itself.
        ("none", re.compile(r"其中|与周末连休|不调休")),
    ]


_CLAUSES = _kinds()


class NoticeError(ValueError):
    """The text is not a holiday notice, or one of its lines says something impossible."""


@dataclass(frozen=True, slots=True)
class Holiday:
    """One item of the notice: a holiday's days off and its make-up workdays (调休上班).

    `advice` keeps what the notice encourages without setting a day (2024: "鼓励各单位…安排职工
    在除夕（2月9日）休息"): read, and shown, but no day off.
    """

    name: str
    line: int
    off: tuple[date, ...]
    work: tuple[date, ...]
    advice: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HolidayNotice:
    year: int
    holidays: tuple[Holiday, ...]
    # Days the notice sets in the December before its year (the 2019 notice: "2018年12月30日至
    # 2019年1月1日放假调休…2018年12月29日（星期六）上班"). They are in the table: the notice for
    # year N is what sets them, and they override year N-1's days date by date.
    elsewhere: tuple[tuple[date, bool, str], ...] = field(default=())

    def table(self) -> dict[str, dict[str, list[str]]]:
        """`{"2027": {"off": [...], "work": [...]}}`, ranges folded ("A..B"), sorted; with the
        days of the previous December that the notice sets."""
        off = sorted({d for h in self.holidays for d in h.off})
        work = sorted({d for h in self.holidays for d in h.work})
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


def _canonical(names: str) -> str:
    out: list[str] = []
    for name in re.split(r"\s*[、,和与及]\s*", names):
        bare = re.sub(r"[“”\"]", "", name)
        canonical = _CANONICAL.get(bare, bare)
        if canonical not in out:
            out.append(canonical)
    return "、".join(out)


def _segments(lines: list[str]) -> list[tuple[int, str, str]]:
    """(line number, holiday names, text) of each numbered holiday item, with the lines that
    go on with it. Raises NoticeError for a line that dates days outside any item."""
    out: list[tuple[int, str, str]] = []
    for number, line in enumerate(lines, start=1):
        starts = list(_ITEM.finditer(line))
        if not starts:
            if not out or not line.strip():
                continue
            if _GOES_ON.match(line):
                last = out[-1]
                out[-1] = (last[0], last[1], f"{last[2]}{line}")
            elif _DATED_DAYS.search(line):
                raise NoticeError(
                    f"line {number} ({line.strip()[:70]}): days outside a numbered holiday item "
                    "(不在编号的节日条目中): expected '一、元旦：…'"
                )
            continue
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(line)
            text = line[match.end() : end]
            closing = _CLOSING.search(text)
            if closing is not None:
                text = text[: closing.start()]
            out.append((number, _canonical(match.group(2)), text))
    return out


def _split(text: str, separators: str) -> list[str]:
    """`text` cut at `separators` outside parentheses, empty pieces dropped."""
    pieces: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        depth += char == "("
        depth -= char == ")" and depth > 0
        if depth == 0 and char in separators:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return [p for p in pieces if p]


def _number(text: str) -> int:
    if text.isdigit():
        return int(text)
    if text == "十":
        return 10
    tens, _, units = text.partition("十")
    if "十" in text:
        return _NUMERALS.get(tens, 1) * 10 + _NUMERALS.get(units, 0)
    return _NUMERALS[text]


class _Line:
    """Reads the clauses of one holiday item, refusing with the line's number and text."""

    def __init__(self, number: int, names: str, text: str, year: int, original: str) -> None:
        self.number, self.names, self.year = number, names, year
        self.text = re.sub(r"\s+", "", text)
        self.original = original.strip()
        # The 元旦 item is the one that reaches into the December before the year.
        self.new_year = "元旦" in names.split("、")
        self.last: date | None = None  # the last date read: the month of a bare "3日"
        self.off: list[date] = []
        self.work: list[date] = []
        self.shifted: list[date] = []  # weekend days moved by 公休日调至
        self.advice: list[str] = []
        self.counted: list[date] | None = None  # the days of the last 放假 clause

    def fail(self, problem: str) -> NoticeError:
        return NoticeError(f"line {self.number} ({self.original[:70]}): {problem}")

    def day(self, match: re.Match[str], prefix: str) -> date:
        y, m, d = (match.group(prefix + k) for k in "ymd")
        if y and not m:
            raise self.fail(f"{y}年{d}日: no month given")
        if m:
            month = int(m)
            # A December date of the 元旦 item is the December before (the 2008 notice:
            # "1月1日（星期二）为法定节假日，12月30日（星期日）为公休日").
            year = int(y) if y else self.year - 1 if self.new_year and month == 12 else self.year
        elif self.last is not None:
            year, month = self.last.year, self.last.month
        else:
            raise self.fail(f"{d}日: no month given")
        try:
            day = date(year, month, int(d))
        except ValueError:
            raise self.fail(f"{year}年{month}月{d}日 does not exist (日期不存在)") from None
        note = match.group(prefix + "a")
        written = _WEEKDAY.search(note) if note else None
        if written is not None:
            said = _WEEKDAYS.index("日" if written.group(1) == "天" else written.group(1))
            if said != day.weekday():
                raise self.fail(
                    f"{month}月{day.day}日 is a 周{_WEEKDAYS[day.weekday()]}, but the notice "
                    f"says 周{_WEEKDAYS[said]} (日期与星期不符)"
                )
        if not date(self.year - 1, 12, 1) <= day <= date(self.year, 12, 31):
            raise self.fail(
                f"{day} is outside {self.year} and the December before it (不在本年度通知范围内)"
            )
        self.last = day
        return day

    def span(self, match: re.Match[str]) -> list[date]:
        first = self.day(match, "s")
        last = self.day(match, "e") if match.group("ed") else first
        if last < first:
            raise self.fail(f"the range ends ({last}) before it starts ({first})")
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def shape(self, clause: str) -> tuple[str, list[list[date]]]:
        """The clause with each list of days and ranges as "L", and the lists' days."""
        pieces: list[str] = []
        lists: list[list[date]] = []
        pos = 0
        for match in _SPAN.finditer(clause):
            between = clause[pos : match.start()]
            days = self.span(match)
            if lists and pieces[-1] == "L" and between in _LIST_JOIN:
                lists[-1].extend(days)
            else:
                pieces += [between, "L"]
                lists.append(days)
            pos = match.end()
        pieces.append(clause[pos:])
        return "".join(pieces), lists

    def read(self) -> Holiday:
        for sentence in _split(self.text, "。."):
            if sentence.startswith("鼓励"):
                self.advise(sentence)
                continue
            for clause in _split(sentence, ",;"):
                self.clause(clause)
        offs = set(self.off)
        # A weekend day moved by 公休日调至 is worked, unless it is a day off itself (2008: "6月8日
        # （星期日）公休日调至6月9日": 6月8日 is 端午, the statutory day).
        self.work += [d for d in self.shifted if d not in offs and d not in self.work]
        if not self.off:
            raise self.fail("no days off found (expected '…日放假…')")
        both = sorted(offs & set(self.work))
        if both:
            raise self.fail(f"{both[0]} is both a day off and a workday")
        return Holiday(
            self.names,
            self.number,
            tuple(sorted(offs)),
            tuple(sorted(set(self.work))),
            tuple(self.advice),
        )

    def clause(self, clause: str) -> None:
        shape, lists = self.shape(clause)
        for kind, pattern in _CLAUSES:
            match = pattern.fullmatch(shape)
            if match is None:
                continue
            if kind == "off":
                self.off += lists[0]
                self.counted = lists[0]
                if match.groups() and match.group(1):
                    self.count(_number(match.group(1)), lists[0])
            elif kind == "count":
                if self.counted is None:
                    raise self.fail(f"'{clause}': a day count before any days off")
                self.count(_number(match.group(1)), self.counted)
            elif kind == "work":
                self.work += lists[0]
            elif kind == "shift":
                self.shifted += lists[0]
                self.off += lists[1]
            return
        raise self.fail(f"cannot read '{clause}' (无法识别此句，未导入)")

    def count(self, said: int, days: list[date]) -> None:
        if said != len(days):
            raise self.fail(
                f"{days[0]}..{days[-1]} is {len(days)} days, but the notice says 共{said}天"
            )

    def advise(self, sentence: str) -> None:
        """Advice, not an arrangement ("鼓励…安排职工在除夕（2月9日）休息"): kept with its days."""
        days = [self.day(m, "w") for m in _DAY.finditer(sentence)]
        plain = re.sub(r"\(\d{1,2}月\d{1,2}日\)", "", sentence)
        dated = "、".join(d.isoformat() for d in days)
        self.advice.append(f"{dated}: {plain}" if dated else plain)


def parse_notice(text: str, *, year: int | None = None) -> HolidayNotice:
    """Parse the notice; `year` is needed only when the text does not name its year.

    Raises NoticeError: not a notice (no numbered holiday lines), no year, a clause of a
    holiday item that is none of the known kinds, or a line that names an impossible date, a
    wrong weekday, a wrong day count, a reversed range or a date outside the notice's reach.
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
        for item in _fold(list(h.off)):
            names[item] = h.name
        for item in _fold(list(h.work)):
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
    if notice.elsewhere:
        days = "、".join(
            f"{d.isoformat()}{'上班' if work else '放假'}" for d, work, _ in notice.elsewhere
        )
        before = notice.year - 1
        out += [
            f"# {days}：{before}年12月的日期由本通知设定，逐日覆盖{before}年的数据。",
            f"# These days of December {before} are set by this notice: they override the "
            f"{before} data date by date.",
        ]
    for h in notice.holidays:
        for advice in h.advice:
            out.append(f"# {h.name}：通知建议，不是放假日 / advice, not a day off: {advice}")
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

"""Audience files as offices keep them: CSV in UTF-8 or GBK/GB18030, and Excel workbooks,
with Chinese headers. Each yields (row as Excel shows it, recipient or None, problem or None),
streaming: an audience can be 100,000 rows and is read again at each send."""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from notifier.schedule.recipients import Recipient, check_address, check_name

# Tried in this order; the first that decodes the whole file wins. UTF-8 is strict enough
# that a GBK file never passes as UTF-8; GB18030 is a superset of GBK (what Excel and WPS
# on a Chinese Windows write as "CSV"). "utf-8-sig" drops a BOM when there is one.
ENCODINGS: tuple[tuple[str, str], ...] = (("utf-8-sig", "UTF-8"), ("gb18030", "GB18030/GBK"))
# Read in chunks of this size while checking an encoding: bounded memory for any file size.
_CHUNK = 1 << 16
# A title row or two ("2026年企业名单") often sits above the header in office workbooks:
# the header is the first of this many rows that names an email column.
HEADER_SEARCH_ROWS = 10

# Header names, in priority order: when several are present the first listed wins (so
# 单位名称 is the display name over 联系人, which stays a template field).
EMAIL_HEADERS = ("email", "邮箱", "电子邮箱", "电子邮件", "邮件地址", "e-mail")
NAME_HEADERS = ("name", "单位名称", "单位", "名称", "姓名", "联系人")
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")

NO_EMAIL_COLUMN = "the header row must have an email column"


class AudienceFileError(ValueError):
    """The file as a whole cannot be read: undecodable, no email column, unknown sheet."""


@dataclass(frozen=True, slots=True)
class Columns:
    """An explicit `columns: {email: 联系邮箱, name: 企业名称}` mapping; None = by name."""

    email: str | None = None
    name: str | None = None


def _norm(header: str) -> str:
    """Headers compare without case, surrounding blanks (full-width too), '-' or '_'."""
    return re.sub(r"[\s\u3000_-]", "", header).casefold()


def pick_columns(headers: Sequence[str], columns: Columns) -> tuple[int, int | None] | None:
    """(email index, name index or None) in `headers`, or None without an email column."""
    normed = [_norm(h) for h in headers]

    def find(wanted: Iterable[str]) -> int | None:
        for want in wanted:
            if _norm(want) in normed:
                return normed.index(_norm(want))
        return None

    email = find([columns.email] if columns.email else EMAIL_HEADERS)
    if email is None:
        return None
    name = find([columns.name] if columns.name else NAME_HEADERS)
    return email, name


def read_audience(
    path: Path, *, sheet: str | None = None, columns: Columns = Columns()
) -> Iterator[tuple[int, Recipient | None, str | None]]:
    """Yield (row, recipient or None, problem or None) for each data row of a CSV or a
    workbook (by the file's suffix). Raises AudienceFileError for a file that cannot be read
    as a whole. An address seen before (any case) is a problem: one message per address."""
    if path.suffix.lower() in WORKBOOK_SUFFIXES:
        rows: Iterator[tuple[int, list[str]]] = _xlsx_rows(path, sheet)
    else:
        rows = _csv_rows(path, detect_encoding(path))
    header: list[str] | None = None
    picked: tuple[int, int | None] | None = None
    for number, cells in rows:
        picked = pick_columns(cells, columns)
        if picked is not None:
            header = [c.strip() for c in cells]
            break
        if number >= HEADER_SEARCH_ROWS:
            break
    if header is None or picked is None:
        wanted = columns.email or " / ".join(EMAIL_HEADERS)
        raise AudienceFileError(
            f"{NO_EMAIL_COLUMN} ({wanted}); found no such header "
            f"(表头须有邮箱列：{' / '.join(EMAIL_HEADERS)}，或用 columns: {{email: 列名}})"
        )
    yield from _recipients(path, rows, header, picked)


def _recipients(
    path: Path,
    rows: Iterator[tuple[int, list[str]]],
    header: list[str],
    picked: tuple[int, int | None],
) -> Iterator[tuple[int, Recipient | None, str | None]]:
    email_at, name_at = picked
    workbook = path.suffix.lower() in WORKBOOK_SUFFIXES
    seen: dict[str, int] = {}
    for number, cells in rows:
        if not any(c.strip() for c in cells):
            continue  # an empty row: between blocks, a blank line
        if workbook:
            cells = (cells + [""] * len(header))[: len(header)]
        elif len(cells) != len(header):
            yield number, None, "wrong number of columns"
            continue
        email = cells[email_at].strip()
        name = cells[name_at].strip() if name_at is not None else ""
        problem = check_address(email)
        if problem:
            yield number, None, f"{problem} [column {header[email_at]}]"
            continue
        problem = check_name(name)
        if problem:
            assert name_at is not None
            yield number, None, f"{problem} [column {header[name_at]}]"
            continue
        first = seen.setdefault(email.casefold(), number)
        if first != number:
            unit = "row" if workbook else "line"
            yield number, None, f"{email} appears again (first at {unit} {first}): one message only"
            continue
        fields = {h: v for h, v in zip(header, cells, strict=True) if h}
        yield number, Recipient(email, name, fields), None


# --- CSV ---


def detect_encoding(path: Path) -> str:
    """The first of ENCODINGS that decodes the whole of `path`, checked in chunks; raises
    AudienceFileError naming the first bad byte for each when none does."""
    failures: list[str] = []
    for codec, label in ENCODINGS:
        bad = _first_bad_byte(path, codec)
        if bad is None:
            return codec
        offset, byte = bad
        failures.append(
            f"not {label} (byte 0x{byte:02x} at offset {offset}, line {_line_at(path, offset)})"
        )
    raise AudienceFileError(
        "cannot decode: "
        + "; ".join(failures)
        + " (无法识别文件编码，请另存为 UTF-8 或 GBK 的 CSV)"
    )


def _first_bad_byte(path: Path, codec: str) -> tuple[int, int] | None:
    """(offset, byte) of the first byte `codec` cannot decode, or None."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    consumed = 0  # bytes handed to the decoder before this chunk
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            pending = decoder.getstate()[0]
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                data = pending + chunk
                offset = consumed - len(pending) + exc.start
                return offset, data[exc.start]
            if not chunk:
                return None
            consumed += len(chunk)


def _line_at(path: Path, offset: int) -> int:
    with path.open("rb") as handle:
        return handle.read(offset).count(b"\n") + 1


def _csv_rows(path: Path, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(line the row starts on, fields): a quoted field may hold line breaks, and the csv
    module counts the row's last line."""
    with path.open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle)
        previous = 0
        for row in reader:
            end = reader.line_num
            line = end if end - previous == 1 else end - _breaks(row)
            previous = end
            yield line, row


def _breaks(values: Iterable[str]) -> int:
    """Line breaks inside a row's fields (CRLF counts once, as the reader counts lines)."""
    return sum(len(_LINE_BREAK.findall(v)) for v in values if "\n" in v or "\r" in v)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


# --- workbooks ---


def _xlsx_rows(path: Path, sheet: str | None) -> Iterator[tuple[int, list[str]]]:
    """(row number as Excel shows it, cell texts) of the first sheet or `sheet`: cached
    values, not formulas; dates as dates; whole numbers (phone numbers) without '.0'.

    python-calamine (Rust) reads 100,000 rows in about 2 s where openpyxl's read-only mode
    takes 15-25 s on the same machine (BENCHMARKS.md, Outreach files)."""
    from python_calamine import CalamineWorkbook  # imported here: only workbooks need it

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        if sheet is None:
            worksheet = workbook.get_sheet_by_index(0)
        elif sheet in workbook.sheet_names:
            worksheet = workbook.get_sheet_by_name(sheet)
        else:
            raise AudienceFileError(
                f"no sheet {sheet!r}; the workbook has {', '.join(workbook.sheet_names)} "
                "(工作表不存在)"
            )
        # iter_rows starts at Excel's row 1 even when the table starts lower (empty rows
        # above it come as empty lists); its columns start at the table's first.
        # tests/test_sheets.py::test_a_table_placed_lower_... holds it to that.
        rows = worksheet.iter_rows()
    except AudienceFileError:
        raise
    except Exception as exc:  # calamine's errors for a file that is not a workbook
        raise AudienceFileError(f"not a readable .xlsx workbook: {exc}") from exc
    for number, values in enumerate(rows, start=1):
        yield number, [cell_text(v) for v in values]


def cell_text(value: Any) -> str:
    """A cell's value as the office reads it in Excel."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes" if not value.second else "seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat(timespec="minutes" if not value.second else "seconds")
    if isinstance(value, float):
        # A phone number stored as a number: 13800138000, not 1.38e10 nor 13800138000.0.
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)

"""Editing an audience from the console: its inline members, or a CSV/Excel list uploaded in
place of its file, shown row by row (and bad rows by their Excel row) before it replaces it."""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notifier.config import Settings
from notifier.editing import Draft, parsed_yaml, schedule_files
from notifier.schedule.edit import (
    EditError,
    members_replaced,
    safe_target,
)
from notifier.schedule.model import Schedule
from notifier.schedule.recipients import Recipient, check_address, check_name
from notifier.schedule.sheets import WORKBOOK_SUFFIXES, AudienceFileError, Columns, read_audience


@dataclass
class ListPreview:
    """An audience's new members (a list typed in, or an uploaded CSV): the rows the loader
    keeps, the rows it skips and why, and `check`'s verdict on the schedule with them."""

    draft: Draft
    rows: list[tuple[int, Recipient]]
    bad: list[tuple[int, str]]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors


def audience_file(settings: Settings, schedule: Schedule, name: str) -> Path:
    """The YAML file that defines audience `name` (EditError if none)."""
    if name not in schedule.audiences:
        raise EditError(f"no audience '{name}'")
    for path in schedule_files(settings.schedules_dir):
        data = parsed_yaml(path.read_text(encoding="utf-8"))
        audiences = data.get("audiences") if isinstance(data, dict) else None
        if isinstance(audiences, dict) and name in audiences:
            return path
    raise EditError(f"audience '{name}' is not defined in any file (edited meanwhile?)")


def members_draft(
    settings: Settings, schedule: Schedule, name: str, members: list[dict[str, str]]
) -> Draft:
    path = audience_file(settings, schedule, name)
    before = path.read_text(encoding="utf-8")
    return Draft(
        path, None, None, before, members_replaced(before, name, members, path), None, None
    )


def _list_audience(schedule: Schedule, name: str) -> Any:
    audience = schedule.audiences.get(name)
    if audience is None:
        raise EditError(f"no audience '{name}'")
    if audience.csv_path is None:
        raise EditError(f"audience '{name}' has no csv: or xlsx: list to replace")
    return audience


def is_workbook(path: Path) -> bool:
    return path.suffix.lower() in WORKBOOK_SUFFIXES


# By header name: the audience has no `columns:`.
BY_NAME = Columns()


def list_text(path: Path, *, sheet: str | None = None, columns: Columns = BY_NAME) -> str:
    """A list file as text: a CSV's own text; a workbook's rows as read (CSV of its good
    rows, then `# row N: problem` for each bad one), what its versions record and diff."""
    if not is_workbook(path):
        return path.read_text(encoding="utf-8-sig") if path.exists() else ""
    if not path.exists():
        return ""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    bad: list[str] = []
    header = False
    try:
        for row, recipient, problem in read_audience(path, sheet=sheet, columns=columns):
            if recipient is None:
                bad.append(f"# row {row}: {problem}\n")
                continue
            if not header:
                writer.writerow(recipient.fields.keys())
                header = True
            writer.writerow(recipient.fields.values())
    except AudienceFileError as exc:
        bad.append(f"# {exc}\n")
    return out.getvalue() + "".join(bad)


def _workbook_text(data: bytes, suffix: str, sheet: str | None, columns: Columns) -> str:
    with tempfile.TemporaryDirectory(prefix="notifier-list-") as tmp:
        path = Path(tmp) / f"list{suffix}"
        path.write_bytes(data)
        return list_text(path, sheet=sheet, columns=columns)


def upload_problem(name: str, path: Path, content: str | bytes) -> str | None:
    """Why an upload cannot replace the audience's list file: a workbook for a CSV or the
    other way round (the audience's csv:/xlsx: key would no longer say what the file is)."""
    workbook = is_workbook(path)
    if workbook and not isinstance(content, bytes):
        return (
            f"audience '{name}' reads the workbook {path.name} (xlsx:); upload an .xlsx file "
            "(此受众的名单是 Excel 文件，请上传 .xlsx)"
        )
    if not workbook and isinstance(content, bytes):
        return (
            f"audience '{name}' reads the CSV file {path.name} (csv:); upload a CSV, or change "
            "its csv: to xlsx: in the schedule file first (此受众的名单是 CSV 文件，请上传 CSV；"
            "如需改用 Excel，请先在日程文件中把 csv: 改为 xlsx:)"
        )
    return None


def list_draft(settings: Settings, schedule: Schedule, name: str, content: str | bytes) -> Draft:
    """The audience's list file replaced by `content`: a CSV's text, or a workbook's bytes.
    The upload's kind must be the file's (the audience's `csv:` or `xlsx:` key stays true):
    an Excel upload for a csv: audience is refused, not switched."""
    audience = _list_audience(schedule, name)
    path = safe_target(settings.schedules_dir, audience.csv_path)
    problem = upload_problem(name, path, content)
    if problem:
        raise EditError(problem)
    if isinstance(content, bytes):
        sheet, columns = audience.sheet, audience.columns
        old = path.read_bytes() if path.exists() else None
        before = list_text(path, sheet=sheet, columns=columns)
        after = _workbook_text(content, path.suffix, sheet, columns)
        return Draft(path, None, None, before, after, None, None, data=content, old_data=old)
    before = path.read_text(encoding="utf-8-sig") if path.exists() else ""
    return Draft(path, None, None, before, content, None, None)


def list_rows(
    schedule: Schedule, name: str, d: Draft
) -> tuple[list[tuple[int, Recipient]], list[tuple[int, str]]]:
    """The new list's good rows and bad rows (row, problem), read as the loader reads the
    audience (its sheet: and columns: too)."""
    audience = _list_audience(schedule, name)
    return read_rows(
        d.written, suffix=d.path.suffix, sheet=audience.sheet, columns=audience.columns
    )


def read_rows(
    content: str | bytes,
    *,
    suffix: str = ".csv",
    sheet: str | None = None,
    columns: Columns = BY_NAME,
) -> tuple[list[tuple[int, Recipient]], list[tuple[int, str]]]:
    """A list's good rows and bad rows (line or Excel row, problem), read as the loader
    reads it: a CSV's text, or a workbook's bytes (`suffix` says which)."""
    rows: list[tuple[int, Recipient]] = []
    bad: list[tuple[int, str]] = []
    with tempfile.TemporaryDirectory(prefix="notifier-list-") as tmp:
        path = Path(tmp) / f"list{suffix if isinstance(content, bytes) else '.csv'}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        try:
            for line, recipient, problem in read_audience(path, sheet=sheet, columns=columns):
                if recipient is not None:
                    rows.append((line, recipient))
                else:
                    bad.append((line, problem or "bad row"))
        except AudienceFileError as exc:
            bad.append((1, str(exc)))
    return rows, bad


def member_rows(
    members: list[dict[str, str]],
) -> tuple[list[tuple[int, Recipient]], list[tuple[int, str]]]:
    rows: list[tuple[int, Recipient]] = []
    bad: list[tuple[int, str]] = []
    for line, m in enumerate(members, start=1):
        problem = check_address(m["email"]) or check_name(m.get("name", ""))
        if problem:
            bad.append((line, problem))
        else:
            fields = {k: v for k, v in m.items() if k not in ("email", "name")}
            rows.append((line, Recipient(m["email"], m.get("name", ""), fields)))
    return rows, bad

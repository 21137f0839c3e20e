"""配置 → 导入放假安排: the State Council's notice, pasted into the console by office staff.

The same reading as `notifier holidays import`, for people who do not use a terminal: paste
the notice, see its table and the sends it would move, then save it as
`schedules/holidays-<year>.yaml`. Saving reloads at once, so the admins' "moved sends" notice
goes out as for any reload; a file the check refuses is removed again and the running config
stays as it was, whatever the check meets (an error naming a file, or one it did not expect).
A file at that name that holds more than the year's table, or a link, is never written.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from notifier.dates.holiday_notice import (
    NOTICE_YEARS,
    HolidayNotice,
    NoticeError,
    TableFileError,
    notice_yaml,
    parse_notice,
    table_file_problem,
    write_table,
)
from notifier.dates.workdays import parse_holiday_table
from notifier.service import App
from notifier.web.common import APP_KEY
from notifier.web.console import Denied, audit, form, redirect, render

log = logging.getLogger(__name__)

MAX_NOTICE_CHARS = 5_000  # a notice is about 700 characters; the form limit is 16 KB


@dataclass(frozen=True, slots=True)
class Target:
    """Where a year's table is saved, and what stands in the way."""

    path: Path
    replaces: bool  # the file holds this year's table already (it is replaced)
    blocked_by: Path | None  # another file has the year's table: saving would give it twice
    refused: str | None = None  # the file at `path` may not be written (other content, a link)


def _target(app: App, year: int) -> Target:
    schedules = app.settings.schedules_dir
    path = schedules / f"holidays-{year}.yaml"
    refused = table_file_problem(path, year, within=schedules)
    current = app.schedule.holiday_files.get(year)
    if current is None:
        return Target(path, False, None, refused)
    if current.resolve() == path.resolve():
        return Target(path, True, None, refused)
    return Target(path, False, current, refused)


class _Refused(Exception):
    """The notice could not be read: the form is shown again with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parse(values: Mapping[str, str]) -> tuple[str, HolidayNotice]:
    """The pasted notice (and the optional year) read; _Refused says why it cannot be."""
    text = values.get("notice", "").strip()
    if not text:
        raise _Refused("请粘贴通知全文。Paste the notice's text.")
    if len(text) > MAX_NOTICE_CHARS:
        raise _Refused(f"通知过长（最多 {MAX_NOTICE_CHARS} 字）。The text is too long.")
    raw_year = values.get("year", "").strip()
    year = None
    if raw_year:
        if not raw_year.isdigit() or int(raw_year) not in NOTICE_YEARS:
            raise _Refused("年份应为四位数字，如 2027。The year is four digits, such as 2027.")
        year = int(raw_year)
    try:
        return text, parse_notice(text, year=year)
    except NoticeError as exc:
        raise _Refused(f"无法读取通知 cannot read the notice: {exc}") from None


def _form_page(
    request: web.Request, *, text: str = "", year: str = "", error: str | None = None
) -> web.Response:
    return render(
        request,
        "holidays_import.html",
        {"page": "config", "text": text, "year": year, "error": error},
        status=422 if error else 200,
    )


async def get_holidays_import(request: web.Request) -> web.Response:
    return _form_page(request)


async def post_holidays_preview(request: web.Request) -> web.Response:
    """The notice's table, where it would be saved and the sends it would move."""
    app = request.app[APP_KEY]
    values = form(request)
    try:
        text, notice = _parse(values)
    except _Refused as exc:
        return _form_page(
            request, text=values.get("notice", ""), year=values.get("year", ""), error=exc.reason
        )
    days, _ = parse_holiday_table(notice.table())
    schedule = app.schedule
    imported = dataclasses.replace(
        schedule, calendar=schedule.calendar.with_table(notice.year, days)
    )
    moved = await app.notices.unsent_moves(imported, schedule.calendar, app.clock())
    context: dict[str, Any] = {
        "page": "config",
        "notice": notice,
        "text": text,
        "year": notice.year,
        "target": _target(app, notice.year),
        "moved": moved,
        "official": schedule.calendar.has_official_data(notice.year)
        and notice.year not in schedule.holiday_files,
    }
    return render(request, "holidays_preview.html", context)


async def post_holidays_save(request: web.Request) -> web.Response:
    """Save the table and reload; a file the check refuses is taken back."""
    app = request.app[APP_KEY]
    try:
        _, notice = _parse(form(request))
    except _Refused as exc:
        raise Denied(422, "无法导入 Cannot import", exc.reason) from None
    target = _target(app, notice.year)
    if target.refused is not None:
        raise Denied(409, "无法保存 Cannot save", target.refused)
    if target.blocked_by is not None:
        raise Denied(
            409,
            "已有该年的表 A table exists",
            f"{notice.year} 年的节假日表已在 {target.blocked_by} 中，请先删除该表再导入。"
            f"The {notice.year} table is already in {target.blocked_by}: remove it first.",
        )
    path = target.path
    try:
        text = notice_yaml(notice, source="console")
        undo = write_table(path, text, year=notice.year, within=app.settings.schedules_dir)
    except TableFileError as exc:
        raise Denied(409, "无法保存 Cannot save", str(exc)) from None
    except OSError as exc:
        raise Denied(
            507, "无法保存 Cannot save", f"写入 {path} 失败 writing failed: {exc.strerror}"
        ) from None
    try:
        loaded = await app.reload_now()
    except Exception as exc:  # whatever the check meets, the file is taken back: never a 500
        log.exception(
            "holiday import: the check failed",
            extra={"action": "holidays_import_failed", "year": notice.year, "file": str(path)},
        )
        _take_back(app, undo)
        raise Denied(
            422,
            "检查出错，未保存 The check failed, not saved",
            f"{type(exc).__name__}: {exc}",
        ) from None
    if not loaded:
        errors = list(app.config_errors)
        _take_back(app, undo)
        raise Denied(
            422,
            "检查未通过，未保存 Check failed, not saved",
            "；".join(errors[:5]) or "配置无效 the config is invalid",
        )
    await audit(request, "import_holidays", f"holidays:{notice.year}", f"file={path.name}")
    log.info(
        "holidays imported",
        extra={"action": "holidays_imported", "year": notice.year, "file": str(path)},
    )
    raise redirect("/config", notice="holidays-imported", year=str(notice.year))


def _take_back(app: App, undo: Callable[[], None]) -> None:
    """The files as they were before the save, and the config reloaded from them."""
    undo()
    try:
        app.reload()  # the refused state is not kept
    except Exception:  # the same failure again: the running config stays, the log has it
        log.exception("reload after the take-back failed", extra={"action": "reload_failed"})

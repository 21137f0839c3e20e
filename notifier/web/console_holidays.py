"""配置 → 导入放假安排: the State Council's notice, pasted into the console by office staff.

The same reading as `notifier holidays import`, for people who do not use a terminal: paste
the notice, see its table and the sends it would move, then save it as
`schedules/holidays-<year>.yaml`. Saving reloads at once, so the admins' "moved sends" notice
goes out as for any reload; a file the check refuses is removed again and the running config
stays as it was.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from notifier.dates.holiday_notice import (
    HolidayNotice,
    NoticeError,
    notice_yaml,
    parse_notice,
    write_table,
)
from notifier.dates.workdays import parse_holiday_table
from notifier.service import App
from notifier.web.common import APP_KEY
from notifier.web.console import Denied, audit, form, redirect, render

log = logging.getLogger(__name__)

MAX_NOTICE_CHARS = 5_000  # a notice is about 700 characters; the form limit is 16 KB
_YEARS = range(2000, 2101)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a year's table is saved, and what stands in the way."""

    path: Path
    replaces: bool  # the file holds this year's table already (it is replaced)
    blocked_by: Path | None  # another file has the year's table: saving would give it twice


def _target(app: App, year: int) -> Target:
    path = app.settings.schedules_dir / f"holidays-{year}.yaml"
    current = app.schedule.holiday_files.get(year)
    if current is None:
        return Target(path, False, None)
    if current.resolve() == path.resolve():
        return Target(path, True, None)
    return Target(path, False, current)


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
        if not raw_year.isdigit() or int(raw_year) not in _YEARS:
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
    if target.blocked_by is not None:
        raise Denied(
            409,
            "已有该年的表 A table exists",
            f"{notice.year} 年的节假日表已在 {target.blocked_by} 中，请先删除该表再导入。"
            f"The {notice.year} table is already in {target.blocked_by}: remove it first.",
        )
    path = target.path
    try:
        undo = write_table(path, notice_yaml(notice, source="console"))
    except OSError as exc:
        raise Denied(
            507, "无法保存 Cannot save", f"写入 {path} 失败 writing failed: {exc.strerror}"
        ) from None
    if not await app.reload_now():
        errors = list(app.config_errors)
        undo()
        app.reload()  # back to the files as they were: the refused state is not kept
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

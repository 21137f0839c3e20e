"""`notifier holidays import FILE|-`: the State Council's notice, read into a `holidays:` table."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import click

from notifier.dates.holiday_notice import (
    NoticeError,
    TableFileError,
    notice_yaml,
    parse_notice,
    write_table,
)


@click.group("holidays")
def holidays_group() -> None:
    """节假日安排 The workday calendar: import the State Council's notice."""


@holidays_group.command("import")
@click.argument("source", type=click.File("rb"))
@click.option("--year", type=int, help="the year, if the text does not name it")
@click.option(
    "--write",
    "write_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="save the table to this file (e.g. schedules/holidays-2027.yaml), then run check",
)
def import_notice(source: BinaryIO, year: int | None, write_to: Path | None) -> None:
    """读取国务院节假日安排通知 Read the notice (FILE, or - for stdin) and print its table.

    The table is printed as YAML for schedules/; with --write it is saved and `notifier check`
    runs on the result. A file that does not pass the check is removed again, so a running
    service never reloads it.
    """
    name = getattr(source, "name", "-")
    try:
        # Decoded here rather than by click: a GBK file is a clear refusal, not a traceback.
        text = source.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        click.echo(
            f"无法导入 cannot import {name}: 不是 UTF-8 文本 not UTF-8 text (byte {exc.start}); "
            "save it as UTF-8 (另存为 UTF-8)",
            err=True,
        )
        sys.exit(1)
    try:
        notice = parse_notice(text, year=year)
    except NoticeError as exc:
        click.echo(f"无法导入 cannot import {name}: {exc}", err=True)
        sys.exit(1)
    text = notice_yaml(notice, source=name if name != "<stdin>" else "")
    if write_to is None:
        click.echo(text, nl=False)
        return
    _write_and_check(write_to, text, notice.year)


def _write_and_check(path: Path, text: str, year: int) -> None:
    # Imported here: reading a notice needs no settings, checking the result does.
    from notifier.checks import load_config
    from notifier.cli.common import settings_or_exit
    from notifier.errors import ConfigError

    settings = settings_or_exit()  # before writing: a bad setting leaves no file behind
    try:
        undo = write_table(path, text, year=year)
    except TableFileError as exc:
        click.echo(f"未保存 not saved: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"未保存 not saved: 写入 {path} 失败 writing failed: {exc}", err=True)
        sys.exit(1)
    checked = False
    try:
        schedule, _, warnings = load_config(settings, now=datetime.now(settings.tz))
        checked = True
    except ConfigError as exc:
        click.echo(
            f"检查未通过，未保存 check failed, {path} not saved ({len(exc.errors)}):", err=True
        )
        for line in exc.errors:
            click.echo(f"  {line}", err=True)
        sys.exit(1)
    except Exception as exc:  # any failure of the check: the file must not stay behind
        click.echo(
            f"检查出错，未保存 the check failed, {path} not saved: {type(exc).__name__}: {exc}",
            err=True,
        )
        sys.exit(1)
    finally:
        if not checked:
            undo()
    for line in warnings:
        click.echo(f"警告 warning: {line}", err=True)
    inside = path.resolve().is_relative_to(settings.schedules_dir.resolve())
    click.echo(f"已保存 saved {path}: {year} holidays table")
    if not inside:
        click.echo(
            f"注意 note: {path} is outside {settings.schedules_dir}; the service reads only "
            "that directory",
            err=True,
        )
    click.echo(f"配置有效 OK: {len(schedule.events)} events, {len(schedule.files)} files")

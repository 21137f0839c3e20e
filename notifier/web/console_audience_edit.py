"""受众 → 编辑: staff edit an audience in the console: members typed in (one a line, with their
own template fields), or a list (CSV as Excel or WPS saves it, GBK or UTF-8; or a workbook)
uploaded in place of the file. "预览" shows every row's verdict; "保存" writes the file, with
the same conflict check as the events' form (a save over a changed file is refused, 409).
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from notifier.editing import EditConflict, EditRefused
from notifier.list_editing import (
    ListPreview,
    audience_file,
    is_workbook,
    list_text,
    upload_problem,
)
from notifier.schedule.edit import EditError, file_hash
from notifier.web.common import APP_KEY
from notifier.web.console import Denied, audit, form, redirect, render
from notifier.web.console_edit import conflict_page, pack_base, unpack_base, unpack_bytes, who_of

# Rows of a list shown in its preview (all bad rows are shown).
SHOWN_ROWS = 200


# A member's own field after the name: `key=value` (what templates see as recipient.key).
_FIELD = re.compile(r"^\s*(?P<key>[^\s=,，]+)\s*=(?P<value>.*)$")


def parse_members(text: str) -> list[dict[str, str]]:
    """One member a line: `email, name, key=value, ...` (a tab or a Chinese comma also
    separates). The fields after the name are the member's own template fields (as the
    file's `{email: ..., name: ..., 科室: ...}`): kept, not dropped, when the list is saved.
    A part without `=` before the first field belongs to the name (which may hold a comma);
    after it, to the field before it (a value with a comma)."""
    members = []
    for line in text.splitlines():
        if not line.strip():
            continue
        email, *rest = re.split(r"[,，\t]", line)
        name_parts: list[str] = []
        fields: dict[str, str] = {}
        last: str | None = None
        for part in rest:
            match = _FIELD.match(part)
            if match is not None and match["key"] not in ("email", "name"):
                last = match["key"]
                fields[last] = match["value"].strip()
            elif last is not None:
                fields[last] = f"{fields[last]},{part}".strip()
            else:
                name_parts.append(part)
        member = {"email": email.strip()}
        name = ",".join(name_parts).strip()
        if name:
            member["name"] = name
        members.append(member | fields)
    return members


def _audience(request: web.Request) -> tuple[str, Any]:
    app = request.app[APP_KEY]
    name = request.match_info["name"]
    audience = app.schedule.audiences.get(name)
    if audience is None:
        raise Denied(404, "未找到 Not found", f"no audience '{name[:64]}'")
    if audience.chat is not None:
        raise Denied(404, "不可编辑 Not editable", f"audience '{name}' is a chat group")
    return name, audience


def _member_line(m: Any) -> str:
    """A member as parse_members reads it back: `email, name, key=value, ...`."""
    extra = "".join(f", {k}={v}" for k, v in m.fields.items())
    if not m.name and not extra:
        return str(m.email)
    return f"{m.email}, {m.name}{extra}"


def _members_text(audience: Any) -> str:
    return "\n".join(_member_line(m) for m in audience.recipients())


def _audience_page(
    request: web.Request,
    name: str,
    audience: Any,
    *,
    members: str,
    base: str,
    workbook: bool,
    preview: ListPreview | None = None,
    content: str | bytes | None = None,
) -> web.Response:
    """The edit page: the members or the list's upload form, and a preview once asked for
    (422 when it found errors)."""
    return render(
        request,
        "audience_edit.html",
        {
            "page": "audiences",
            "name": name,
            "audience": audience,
            "members": members,
            "base": base,
            "preview": preview,
            "content": _packed(content),
            "kind": "workbook" if isinstance(content, bytes) else "text",
            "workbook": workbook,
            "shown": SHOWN_ROWS,
        },
        status=200 if preview is None or preview.ok else 422,
    )


async def get_audience_edit(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    name, audience = _audience(request)
    try:
        if audience.csv_path is None:
            path = await asyncio.to_thread(audience_file, app.settings, app.schedule, name)
            text = path.read_text(encoding="utf-8") if path.exists() else ""
        else:
            path = audience.csv_path
            text = await asyncio.to_thread(
                list_text, path, sheet=audience.sheet, columns=audience.columns
            )
    except EditError as exc:
        raise Denied(404, "未找到 Not found", str(exc)) from None
    return _audience_page(
        request,
        name,
        audience,
        members=_members_text(audience) if audience.csv_path is None else "",
        base=file_hash(text) if path.exists() else "",
        workbook=is_workbook(path),
    )


async def _upload(request: web.Request, values: Mapping[str, str]) -> str | bytes | None:
    """The uploaded list: a workbook's bytes (by the file name's suffix), else the CSV's
    text as the form read it (UTF-8 or GBK)."""
    posted = await request.post()  # aiohttp keeps the parsed form: this reads nothing again
    upload = posted.get("file")
    if isinstance(upload, web.FileField) and is_workbook(Path(upload.filename or "")):
        upload.file.seek(0)
        data: bytes = upload.file.read()
        return data
    return values.get("file") or None


async def post_audience_edit(request: web.Request) -> web.Response:
    """预览 or 保存 an inline audience's members, or an uploaded list (file) / its confirmation
    (content, carried base64 from the preview)."""
    app = request.app[APP_KEY]
    name, audience = _audience(request)
    values = form(request)
    base = values.get("base", "")
    members: list[dict[str, str]] | None = None
    content: str | bytes | None = None
    if audience.csv_path is None:
        members = parse_members(values.get("members", ""))
    elif values.get("file"):
        content = await _upload(request, values)
    elif values.get("content") and values.get("kind") == "workbook":
        content = unpack_bytes(values["content"])
    elif values.get("content"):
        content = unpack_base(values["content"])
    if audience.csv_path is not None:
        if not content:
            raise Denied(
                422, "请选择文件 Choose a file", "请选择要上传的名单文件。Choose the list."
            )
        problem = upload_problem(name, audience.csv_path, content)
        if problem:
            raise Denied(422, "名单类型不符 Wrong kind of list", problem)
    try:
        if values.get("do") == "save":
            d = await app.editor.save_audience(
                name, members=members, content=content, base=base, who=who_of(request)
            )
            await audit(request, "edit_audience", f"audience:{name}", f"file={d.path.name}")
            raise redirect("/audiences", notice="audience-saved")
        preview = await app.editor.preview_audience(name, members=members, content=content)
    except EditConflict as exc:
        return conflict_page(request, exc, page="audiences", event_id=None)
    except EditRefused as exc:
        raise Denied(422, "检查未通过，未保存 Check failed", "；".join(exc.errors[:5])) from None
    except EditError as exc:
        raise Denied(409, "无法保存 Cannot save", str(exc)) from None
    return _audience_page(
        request,
        name,
        audience,
        members=values.get("members", ""),
        base=base,
        workbook=is_workbook(audience.csv_path) if audience.csv_path else False,
        preview=preview,
        content=content,
    )


def _packed(content: str | bytes | None) -> str:
    """An uploaded list carried from its preview to its save (a workbook's bytes as they are)."""
    if content is None:
        return ""
    if isinstance(content, bytes):
        return base64.urlsafe_b64encode(content).decode("ascii")
    return pack_base(content)

"""事件 → 新建 / 编辑 / 删除: staff edit the calendar's events in plain HTML forms.

The form says what the YAML says, in the files' own notations (4·15, 12-01..12-07, 3月31日,
10 days, 3个工作日). "预览" shows the send days of the next 400 days, the sends added, moved
or removed and `check`'s verdict, with each error next to its field; "保存" writes the event
into its file (keeping the file's comments and layout) and reloads. A form carries the
event's YAML as it was when the page was made: a save over a changed event is refused (409)
with the diff, never written over it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

import yaml
from aiohttp import web

from notifier.dates.workdays import WorkdayPolicy
from notifier.editing import EditConflict, EditPreview, EditRefused, Who
from notifier.schedule.edit import EditError, event_text, file_hash
from notifier.web.auth import client_address
from notifier.web.common import APP_KEY
from notifier.web.console import Denied, audit, form, redirect, render, session_of

RULES = ("date", "month", "lunar", "rrule")
TRIGGERS = ("before", "on", "after", "every")
WORKDAY_POLICIES = ("", *get_args(WorkdayPolicy))  # "": the file's default
# Empty reminder rows under the event's own, for adding reminders without JavaScript.
BLANK_ROWS = 2
# More rows than any event has: a bound on what a form can make the server parse.
MAX_ROWS = 40
# Separators of a list of one-off dates typed in one field.
_DATE_SPLIT = re.compile(r"[\n,，、;；]+")


@dataclass
class Row:
    id: str = ""
    kind: str = "before"
    value: str = ""
    send_at: str = ""
    workdays: str = ""
    audience: str = ""
    template: str = ""
    attachments: str = ""  # one path under schedules/ a line


@dataclass
class EventForm:
    id: str = ""
    title: str = ""
    description: str = ""
    rule: str = "date"
    date: str = ""
    duration: str = ""
    send_at: str = ""
    workdays: str = ""
    audience: str = ""
    template: str = ""
    grace: str = ""
    vars: str = ""
    attachments: str = ""  # one path under schedules/ a line
    file: str = ""
    rows: list[Row] = field(default_factory=list)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _lines(value: Any) -> str:
    """A list of paths as the form's one-a-line text."""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return _text(value)


def _paths(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def form_from_event(data: Mapping[str, Any]) -> EventForm:
    """The form of an event as its file writes it."""
    rule = next((k for k in RULES if k in data), "date")
    raw_date = data.get(rule)
    if isinstance(raw_date, list):
        date_text = "\n".join(str(v) for v in raw_date)
    else:
        date_text = _text(raw_date)
    rows = []
    for rem in data.get("reminders") or []:
        if not isinstance(rem, Mapping):
            continue
        kind = next((k for k in TRIGGERS if k in rem), "before")
        rows.append(
            Row(
                id=_text(rem.get("id")),
                kind=kind,
                value=_text(rem.get(kind)),
                send_at=_text(rem.get("send_at")),
                workdays=_text(rem.get("workdays")),
                audience=_text(rem.get("audience")),
                template=_text(rem.get("template")),
                attachments=_lines(rem.get("attachments")),
            )
        )
    variables = data.get("vars") or {}
    return EventForm(
        id=_text(data.get("id")),
        title=_text(data.get("title")),
        description=_text(data.get("description")),
        rule=rule,
        date=date_text,
        duration=_text(data.get("duration")),
        send_at=_text(data.get("send_at")),
        workdays=_text(data.get("workdays")),
        audience=_text(data.get("audience")),
        template=_text(data.get("template")),
        grace=_text(data.get("grace")),
        vars=yaml.safe_dump(variables, allow_unicode=True, sort_keys=False) if variables else "",
        attachments=_lines(data.get("attachments")),
        rows=rows,
    )


def form_from_post(values: Mapping[str, str]) -> EventForm:
    texts: dict[str, Any] = {
        k: values.get(k, "").strip() for k in EventForm.__dataclass_fields__ if k != "rows"
    }
    f = EventForm(**texts)
    f.description = values.get("description", "").strip()
    f.vars = values.get("vars", "")
    for n in range(MAX_ROWS):
        if f"r{n}_kind" not in values:
            break
        if values.get(f"r{n}_remove"):
            continue
        keys = Row.__dataclass_fields__
        f.rows.append(Row(**{k: values.get(f"r{n}_{k}", "").strip() for k in keys}))
    return f


def _scalar(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def _names(text: str) -> str | list[str]:
    names = [n.strip() for n in re.split(r"[,，、]", text) if n.strip()]
    return names[0] if len(names) == 1 else names


def event_from_form(f: EventForm) -> tuple[dict[str, Any], dict[str, list[str]], list[int]]:
    """The event's mapping, the form's own errors by field, and each reminder's row number."""
    errors: dict[str, list[str]] = {}
    ev: dict[str, Any] = {"id": f.id, "title": f.title}
    if f.description:
        ev["description"] = f.description
    if f.rule not in RULES:
        errors.setdefault("rule", []).append(f"{f.rule!r} is not one of {', '.join(RULES)}")
    elif f.rule == "date":
        items = [d.strip() for d in _DATE_SPLIT.split(f.date) if d.strip()]
        ev["date"] = items[0] if len(items) == 1 else items
    else:
        ev[f.rule] = _scalar(f.date) if f.rule == "month" else f.date
    if f.duration:
        ev["duration"] = _scalar(f.duration)
    for key in ("send_at", "workdays", "template", "grace"):
        if getattr(f, key):
            ev[key] = getattr(f, key)
    if f.audience:
        ev["audience"] = _names(f.audience)
    if _paths(f.attachments):
        ev["attachments"] = _paths(f.attachments)
    if f.vars.strip():
        try:
            variables = yaml.safe_load(f.vars)
        except yaml.YAMLError as exc:
            errors.setdefault("vars", []).append(f"invalid YAML: {exc}")
        else:
            if isinstance(variables, dict):
                ev["vars"] = variables
            else:
                errors.setdefault("vars", []).append("vars: expected a mapping (key: value)")
    reminders: list[dict[str, Any]] = []
    row_of: list[int] = []
    for n, row in enumerate(f.rows):
        if not row.value and row.kind != "on" and not row.id:
            continue  # an empty row
        rem: dict[str, Any] = {}
        if row.id:
            rem["id"] = row.id
        if row.kind not in TRIGGERS:
            errors.setdefault(f"r{n}_kind", []).append(f"{row.kind!r} is not a trigger")
            continue
        value = row.value or ("start" if row.kind == "on" else "")
        rem[row.kind] = _scalar(value) if row.kind in ("before", "after") else value
        for key in ("send_at", "workdays", "template"):
            if getattr(row, key):
                rem[key] = getattr(row, key)
        if row.audience:
            rem["audience"] = _names(row.audience)
        if _paths(row.attachments):
            rem["attachments"] = _paths(row.attachments)
        reminders.append(rem)
        row_of.append(n)
    ev["reminders"] = reminders
    return ev, errors, row_of


_LOCATED = re.compile(r"^(?P<file>.+?): events\[(?P<i>\d+)\](?P<path>[^:]*?)(?: \(the key\))?: ")
_REMINDER = re.compile(r"^\.reminders\[(?P<j>\d+)\](?:\.(?P<key>\w+))?")
# check's size limit names the event and the reminder, not a key: it goes by the event's
# attachments field (the total counts the event's files and the reminder's own).
_OVER_LIMIT = re.compile(r"^.+?: event '(?P<id>[^']+)' reminder '[^']+': attachments come to ")


def field_errors(preview: EditPreview, row_of: list[int]) -> tuple[dict[str, list[str]], list[str]]:
    """The check's errors by form field (those of the edited event) and the others."""
    index = preview.index
    by_field: dict[str, list[str]] = {}
    other: list[str] = []
    for line in preview.errors:
        over = _OVER_LIMIT.match(line)
        if over is not None and over["id"] == preview.draft.new_id:
            by_field.setdefault("attachments", []).append(line)
            continue
        match = _LOCATED.match(line)
        if match is None or index is None or int(match["i"]) != index:
            other.append(line)
            continue
        sub = match["path"]
        rem = _REMINDER.match(sub)
        if rem is not None:
            j = int(rem["j"])
            row = row_of[j] if j < len(row_of) else 0
            key = rem["key"]
            if key in TRIGGERS or key is None:
                key = "audience" if "audience" in line and key is None else "value"
            name = f"r{row}_{key}"
        else:
            key = sub.lstrip(".").split(".")[0].split("[")[0]
            name = "date" if key in RULES else (key or "id")
        by_field.setdefault(name, []).append(line)
    return by_field, other


def who_of(request: web.Request) -> Who:
    return Who(session_of(request).role, client_address(request))


def pack_base(text: str) -> str:
    """The event's YAML for a hidden field: base64, as browsers drop line breaks from an
    input's value."""
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


def unpack_base(value: str) -> str:
    try:
        return unpack_bytes(value).decode("utf-8")
    except UnicodeError:
        raise Denied(
            400, "表单已损坏 Bad form", "表单的 base 字段无效，请重新打开编辑页。Reload the page."
        ) from None


def unpack_bytes(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, UnicodeError, ValueError):
        raise Denied(
            400, "表单已损坏 Bad form", "表单的 base 字段无效，请重新打开编辑页。Reload the page."
        ) from None


def _blank_rows(f: EventForm) -> EventForm:
    f.rows = [*f.rows, *(Row() for _ in range(BLANK_ROWS))]
    return f


def _page(
    request: web.Request,
    f: EventForm,
    *,
    event_id: str | None,
    base: str,
    preview: EditPreview | None = None,
    errors: dict[str, list[str]] | None = None,
    other: list[str] | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "event_edit.html",
        {
            "page": "events",
            "f": _blank_rows(f),
            "event_id": event_id,
            "base": base,
            "preview": preview,
            "errors": errors or {},
            "other": other or [],
            "rules": RULES,
            "triggers": TRIGGERS,
            "policies": WORKDAY_POLICIES,
        },
        status=status,
    )


def conflict_page(
    request: web.Request, exc: EditConflict, *, page: str, event_id: str | None
) -> web.Response:
    """The 409 page of a save refused because the file changed since the form was loaded."""
    return render(
        request,
        "edit_conflict.html",
        {"page": page, "conflict": exc, "event_id": event_id},
        status=409,
    )


async def get_new_event(request: web.Request) -> web.Response:
    return _page(request, EventForm(rows=[Row()]), event_id=None, base="")


async def get_edit_event(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    event_id = request.match_info["event_id"]
    try:
        _, data = app.editor.event_source(event_id)
    except EditError as exc:
        raise Denied(404, "未找到 Not found", str(exc)) from None
    return _page(
        request, form_from_event(data), event_id=event_id, base=pack_base(event_text(data))
    )


async def post_edit_event(request: web.Request) -> web.Response:
    """预览 (do=preview) or 保存 (do=save) a new or changed event."""
    app = request.app[APP_KEY]
    values = form(request)
    event_id = request.match_info.get("event_id")
    base = values.get("base", "")
    f = form_from_post(values)
    new, own_errors, row_of = event_from_form(f)
    if own_errors:
        return _page(request, f, event_id=event_id, base=base, errors=own_errors, status=422)
    file = (f.file or None) if event_id is None else None
    try:
        if values.get("do") == "save":
            d = await app.editor.save_event(
                event_id,
                new,
                base=unpack_base(base) if event_id else None,
                file=file,
                who=who_of(request),
            )
            await audit(
                request,
                "edit_event" if event_id else "create_event",
                f"event:{d.new_id}",
                f"file={d.path.name}",
            )
            raise redirect(f"/events/{d.new_id}", notice="saved")
        preview = await app.editor.preview_edit(event_id, new, file=file)
    except EditConflict as exc:
        return conflict_page(request, exc, page="events", event_id=event_id)
    except EditRefused as exc:
        quick = await app.editor.preview_edit(event_id, new, file=file)
        preview = EditPreview(quick.draft, list(exc.errors), index=quick.index)
        by_field, other = field_errors(preview, row_of)
        return _page(
            request, f, event_id=event_id, base=base, preview=preview, errors=by_field,
            other=other, status=422,
        )  # fmt: skip
    except EditError as exc:
        raise Denied(409, "无法保存 Cannot save", str(exc)) from None
    by_field, other = field_errors(preview, row_of)
    return _page(
        request, f, event_id=event_id, base=base, preview=preview, errors=by_field, other=other,
        status=200 if preview.ok else 422,
    )  # fmt: skip


async def get_delete_event(request: web.Request) -> web.Response:
    """The sends the deletion removes, and the button that deletes."""
    app = request.app[APP_KEY]
    event_id = request.match_info["event_id"]
    try:
        _, data = app.editor.event_source(event_id)
        preview = await app.editor.preview_edit(event_id, None)
    except EditError as exc:
        raise Denied(404, "未找到 Not found", str(exc)) from None
    return render(
        request,
        "event_delete.html",
        {
            "page": "events",
            "event_id": event_id,
            "base": pack_base(event_text(data)),
            "preview": preview,
        },
        status=200 if preview.ok else 422,
    )


async def post_delete_event(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    event_id = request.match_info["event_id"]
    try:
        d = await app.editor.save_event(
            event_id, None, base=unpack_base(form(request).get("base", "")), who=who_of(request)
        )
    except EditConflict as exc:
        return conflict_page(request, exc, page="events", event_id=event_id)
    except EditRefused as exc:
        raise Denied(422, "检查未通过，未删除 Check failed", "；".join(exc.errors[:5])) from None
    except EditError as exc:
        raise Denied(409, "无法删除 Cannot delete", str(exc)) from None
    await audit(request, "delete_event", f"event:{event_id}", f"file={d.path.name}")
    raise redirect("/events", notice="deleted")


# --- history and revert ----------------------------------------------------------------------

# Versions listed on a history page (the newest; the database keeps them all).
HISTORY_ROWS = 200
ACTIONS = {
    "create": "新建 created",
    "edit": "编辑 edited",
    "delete": "删除 deleted",
    "revert": "恢复 reverted",
    "outside": "在控制台之外编辑 edited outside the console",
    "initial": "首次记录 first recorded",
}


async def get_file_history(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    name = request.query.get("file", "")[:300]
    versions = await app.editor.history(file=name or None, limit=HISTORY_ROWS)
    return render(
        request,
        "history.html",
        {"page": "events", "file": name, "event_id": None, "versions": versions}
        | {"actions": ACTIONS},
    )


async def get_event_history(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    event_id = request.match_info["event_id"]
    versions = await app.editor.history(event=event_id, limit=HISTORY_ROWS)
    return render(
        request,
        "history.html",
        {"page": "events", "file": "", "event_id": event_id, "versions": versions}
        | {"actions": ACTIONS},
    )


def _version_id(request: web.Request) -> int:
    raw = request.match_info["version_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise Denied(404, "未找到 Not found", "no such version")
    return int(raw)


async def get_version(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    v = await app.editor.version(_version_id(request))
    if v is None:
        raise Denied(404, "未找到 Not found", "no such version")
    return render(request, "version.html", {"page": "events", "v": v, "actions": ACTIONS})


async def get_revert(request: web.Request) -> web.Response:
    """What restoring the version would do: the same preview as an edit, then 保存."""
    app = request.app[APP_KEY]
    try:
        v, preview = await app.editor.preview_revert(_version_id(request))
    except EditError as exc:
        raise Denied(404, "无法恢复 Cannot revert", str(exc)) from None
    d = preview.draft
    return render(
        request,
        "revert.html",
        {
            "page": "events",
            "v": v,
            "preview": preview,
            "base": "" if d.new_file else file_hash(d.before),
            "actions": ACTIONS,
        },
        status=200 if preview.ok else 422,
    )


async def post_revert(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    version_id = _version_id(request)
    try:
        v, _ = await app.editor.revert(
            version_id, base=form(request).get("base", ""), who=who_of(request)
        )
    except EditConflict as exc:
        return conflict_page(request, exc, page="events", event_id=None)
    except EditRefused as exc:
        raise Denied(422, "检查未通过，未恢复 Check failed", "；".join(exc.errors[:5])) from None
    except EditError as exc:
        raise Denied(409, "无法恢复 Cannot revert", str(exc)) from None
    await audit(request, "revert_version", f"file:{v.file}", f"version={v.id}")
    raise redirect("/history", file=v.file, notice="reverted")

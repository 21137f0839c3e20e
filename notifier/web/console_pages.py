"""The console's pages and actions; `console.guard` has checked sign-in, CSRF and role."""

from __future__ import annotations

import itertools
import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import date

from aiohttp import web

import notifier.web.console_views as views
from notifier.channels.payloads import posted_text
from notifier.compose.message import attachments_of, file_size, message_parts
from notifier.compose.outbox import AudienceError
from notifier.compose.records import FORMATS
from notifier.errors import RenderError, SendError
from notifier.ledger.console import RETRYABLE, decode_cursor
from notifier.ledger.models import Delivery, DeliveryFilter, State
from notifier.schedule.describe import rule_in_words
from notifier.schedule.model import Audience, Event
from notifier.web.auth import ROLE_EDITOR
from notifier.web.common import APP_KEY, MAX_DATE, MIN_DATE, stream_record
from notifier.web.console import (
    CONSOLE_STORE_KEY,
    HEADERS,
    PREVIEW_CSP,
    VIEWS_KEY,
    Denied,
    audit,
    day_bounds,
    form,
    redirect,
    render,
    session_of,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 50
FAILED_DAYS = 7
MAX_FILTER_LENGTH = 254
# The raw message shown in a delivery's page is cut here (a message can be large).
RAW_SHOWN_CHARS = 200_000
_MONTH = re.compile(r"^\d{4}-\d{2}$")
# An unsubscribe link's token: with it anyone can unsubscribe its address, so a viewer sees
# previews with the token masked (and no raw messages, whose parts may be base64).
_UNSUBSCRIBE_TOKEN = re.compile(r"(/unsubscribe\?token=)[^\s\"'<>&]+")


def mask_unsubscribe_tokens(text: str) -> str:
    return _UNSUBSCRIBE_TOKEN.sub(r"\1•••", text)


def _date_param(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise Denied(400, "参数错误 Bad parameter", f"{name}: 不是日期 YYYY-MM-DD") from None
    if not MIN_DATE <= day <= MAX_DATE:
        raise Denied(400, "参数错误 Bad parameter", f"{name}: 超出范围 out of range")
    return day


def _text_param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if len(value) > MAX_FILTER_LENGTH:
        raise Denied(400, "参数错误 Bad parameter", f"{name}: 过长 too long")
    return value


def _event(request: web.Request) -> Event:
    app = request.app[APP_KEY]
    event_id = request.match_info["event_id"]
    event = app.schedule.events.get(event_id)
    if event is None:
        raise Denied(404, "未找到 Not found", f"没有事件 no event '{event_id[:64]}'")
    return event


# --- 概览 -----------------------------------------------------------------------------------


async def get_overview(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    store = request.app[CONSOLE_STORE_KEY]
    now = app.now()
    today = now.date()
    since = app.clock() - FAILED_DAYS * 86400
    failed = []
    for state in (State.FAILED, State.DEAD):
        page = await store.deliveries_page(
            DeliveryFilter(state=state, since=since), after=None, limit=20
        )
        failed.extend(page.rows)
    failed.sort(key=lambda d: (d.due_at, d.id), reverse=True)
    start, end = day_bounds(app, today)
    uptime = int(app.clock() - app.started_at)
    return render(
        request,
        "overview.html",
        {
            "page": "overview",
            "sends": request.app[VIEWS_KEY].get(
                app.schedule,
                ("next", now.replace(second=0, microsecond=0)),
                lambda: views.next_sends(app),
            ),
            "failed": failed[:20],
            "failed_days": FAILED_DAYS,
            "errors": app.config_errors,
            "warnings": app.warnings,
            "unmade": [u.as_payload() for u in app.unmade_sends()],
            "loaded_at": app.loaded_at,
            "years": views.workday_years(app, today),
            "accepts": await store.hook_accepts(since=start, until=end),
            "uptime": f"{uptime // 86400}天 {uptime % 86400 // 3600}小时 {uptime % 3600 // 60}分",
            "events": len(app.schedule.events),
        },
    )


# --- 日历 -----------------------------------------------------------------------------------


async def get_calendar_page(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    today = app.now().date()
    month_text = request.query.get("month", "")
    if month_text:
        if not _MONTH.match(month_text):
            raise Denied(400, "参数错误 Bad parameter", "month: YYYY-MM")
        first = _date_param(month_text + "-01", "month")
        assert first is not None
    else:
        first = today.replace(day=1)
    day = _date_param(request.query.get("day"), "day")
    if day is not None:
        first = day.replace(day=1)
    view = request.app[VIEWS_KEY].get(
        app.schedule, ("month", first, today), lambda: views.month_view(app, first, today)
    )
    return render(
        request,
        "calendar.html",
        {
            "page": "calendar",
            "view": view,
            "weekdays": views.WEEKDAY_HEADERS,
            "day": day,
            "day_sends": view.sends_by_day.get(day, []) if day else [],
            "years": range(first.year - 2, first.year + 3),
            "today": today,
        },
    )


# --- 事件 -----------------------------------------------------------------------------------


async def get_events_page(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    today = app.now().date()
    return render(
        request,
        "events.html",
        {
            "page": "events",
            "events": request.app[VIEWS_KEY].get(
                app.schedule, ("events", today), lambda: views.event_rows(app, today)
            ),
        },
    )


@dataclass(frozen=True, slots=True)
class Preview:
    """The event page's message preview: one recipient's email, or a chat group's post."""

    reminder: str
    audiences: tuple[str, ...]  # the reminder's audiences, to choose from
    audience: Audience
    recipient: str
    subject: str
    text: str
    html: str | None = None
    body: str | None = None  # a chat group's posted JSON
    # (name, MIME type, size in words) of each file an email carries; a group gets none.
    attachments: tuple[tuple[str, str, str], ...] = ()


def _preview(request: web.Request) -> Preview:
    """The chosen reminder's message for the chosen audience (default: its first) and
    recipient (default: the audience's first); a viewer's with unsubscribe tokens masked."""
    preview = _message_preview(request)
    if session_of(request).is_admin:
        return preview
    return replace(
        preview,
        text=mask_unsubscribe_tokens(preview.text),
        html=None if preview.html is None else mask_unsubscribe_tokens(preview.html),
        body=None if preview.body is None else mask_unsubscribe_tokens(preview.body),
    )


def _message_preview(request: web.Request) -> Preview:
    app = request.app[APP_KEY]
    event = _event(request)
    reminder = _text_param(request, "reminder") or event.reminders[0].id
    recipient = _text_param(request, "recipient")
    try:
        found = app.preview(
            event.id,
            reminder_id=reminder,
            recipient=recipient,
            audience=_text_param(request, "audience"),
            as_planned=True,
        )
    except AudienceError as exc:
        raise Denied(422, "受众不对 Wrong audience", str(exc)) from None
    except (RenderError, SendError) as exc:
        raise Denied(422, "无法生成消息 Cannot render", str(exc)) from None
    row = found.row
    if row is None:
        raise Denied(422, "收件人不在受众中 Not in the audience", f"{recipient or ''}")
    base = (reminder, found.audiences, found.audience, row.recipient)
    files = tuple((a.name, a.mime, file_size(a.size)) for a in found.attachments)
    if found.audience.chat is not None:  # the ledger row holds the platform's JSON body
        text = posted_text(json.loads(row.message))
        return Preview(*base, subject=row.subject, text=text, body=row.message, attachments=files)
    subject, text, html = message_parts(row.message)
    return Preview(*base, subject=subject, text=text, html=html, attachments=files)


async def get_event_page(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    event = _event(request)
    today = app.now().date()
    occs = views.upcoming_occurrences(event, today)
    preview = _preview(request)
    members = list(itertools.islice(preview.audience.recipients(), 200))
    return render(
        request,
        "event.html",
        {
            "page": "event",
            "event": event,
            "rules": [rule_in_words(s) for s in event.specs],
            "occurrences": occs,
            "reminder_days": [(o, views.reminder_days(app, event, o)) for o in occs[:3]],
            "preview": preview,
            "members": [] if preview.audience.chat else members,
        },
    )


async def get_preview(request: web.Request) -> web.Response:
    """The HTML body alone, for the sandboxed iframe: its own CSP, inline styles only."""
    return web.Response(
        text=_preview(request).html or "",
        content_type="text/html",
        headers={
            "Content-Security-Policy": PREVIEW_CSP + "; frame-ancestors 'self'",
            "X-Frame-Options": "SAMEORIGIN",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


def _send_target(request: web.Request, reminder: str | None) -> tuple[Event, str | None]:
    event = _event(request)
    if reminder is not None and reminder not in {r.id for r in event.reminders}:
        raise Denied(404, "未找到 Not found", f"事件没有提醒 no reminder '{reminder[:64]}'")
    return event, reminder


async def get_send_confirm(request: web.Request) -> web.Response:
    """The confirmation before a send: what goes to whom, and how many."""
    app = request.app[APP_KEY]
    event, reminder = _send_target(request, _text_param(request, "reminder"))
    base = next((r for r in event.reminders if r.id == reminder), event.reminders[0])
    audience = app.schedule.audiences[base.audience]
    return render(
        request,
        "send_confirm.html",
        {
            "page": "event",
            "event": event,
            "reminder": reminder,
            "audience": audience,
            "suppressed": await app.suppressed_in(audience.name),
        },
    )


async def post_send_now(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    event, reminder = _send_target(request, form(request).get("reminder") or None)
    try:
        created, size = await app.send_now(event.id, reminder_id=reminder)
    except (RenderError, SendError) as exc:
        raise Denied(422, "无法发送 Cannot send", str(exc)) from None
    await audit(
        request,
        "send_now",
        f"event:{event.id}",
        f"reminder={reminder or 'manual'} created={created} audience={size}",
    )
    log.info(
        "console send now",
        extra={"action": "console_send", "event": event.id, "rows_created": created},
    )
    raise redirect("/deliveries", event=event.id, notice=f"sent:{created}:{size}")


# --- 投递记录 -------------------------------------------------------------------------------


def _state_param(request: web.Request) -> State | None:
    value = request.query.get("state")
    if not value:
        return None
    try:
        return State(value)
    except ValueError:
        raise Denied(400, "参数错误 Bad parameter", "state: 未知状态 unknown state") from None


async def get_deliveries_export(request: web.Request) -> web.StreamResponse:
    """The 导出 Export button: the record of exactly the filtered view (state, event,
    recipient, day), every page of it, streamed as XLSX (or CSV with format=csv)."""
    app = request.app[APP_KEY]
    fmt = request.query.get("format", "xlsx")
    if fmt not in FORMATS:
        raise Denied(400, "参数错误 Bad parameter", "format: xlsx 或 csv / xlsx or csv")
    day = _date_param(request.query.get("date"), "date")
    record = await app.delivery_record(
        "csv" if fmt == "csv" else "xlsx",
        state=_state_param(request),
        event=_text_param(request, "event"),
        recipient=_text_param(request, "recipient"),
        start=day,
        end=day,
    )
    return await stream_record(request, record, headers=HEADERS)


async def get_deliveries_page(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    store = request.app[CONSOLE_STORE_KEY]
    q = request.query
    state = _state_param(request)
    day = _date_param(q.get("date"), "date")
    since = until = None
    if day is not None:
        since, until = day_bounds(app, day)
    filters = DeliveryFilter(
        state=state,
        event=_text_param(request, "event"),
        recipient=_text_param(request, "recipient"),
        since=since,
        until=until,
    )
    after = None
    if q.get("after"):
        after = decode_cursor(q["after"][:200])
        if after is None:
            raise Denied(400, "参数错误 Bad parameter", "after: 无效的翻页标记 bad cursor")
    page = await store.deliveries_page(filters, after=after, limit=PAGE_SIZE)
    query = {
        "state": q.get("state", ""),
        "event": filters.event or "",
        "recipient": filters.recipient or "",
        "date": day.isoformat() if day else "",
    }
    notice = q.get("notice", "")
    sent = notice.split(":") if notice.startswith("sent:") else None
    return render(
        request,
        "deliveries.html",
        {
            "page": "deliveries",
            "rows": page.rows,
            "waits": await app.waiting([r.id for r in page.rows]),
            "next_cursor": page.next_cursor,
            "query": query,
            "next_query": {k: v for k, v in query.items() if v},
            "states": [s.value for s in State],
            "events": sorted(app.schedule.events),
            "first_page": after is None,
            "sent": sent if sent and len(sent) == 3 else None,
        },
    )


async def _delivery(request: web.Request) -> Delivery:
    app = request.app[APP_KEY]
    raw = request.match_info["delivery_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise Denied(404, "未找到 Not found", "没有这条投递记录 no such delivery")
    row = await app.delivery(int(raw))
    if row is None:
        raise Denied(404, "未找到 Not found", "没有这条投递记录 no such delivery")
    return row


async def _attachments(request: web.Request, row: Delivery) -> list[tuple[str, str, str]]:
    """(name, MIME type, size) of the files the row's message carries, as stored."""
    named = attachments_of(row.message) if row.channel == "email" else []
    if not named:
        return []
    sizes = await request.app[APP_KEY].attachment_sizes([a.digest for a in named])
    return [(a.name, a.mime, file_size(sizes.get(a.digest, 0))) for a in named]


async def get_delivery_page(request: web.Request) -> web.Response:
    store = request.app[CONSOLE_STORE_KEY]
    row = await _delivery(request)
    return render(
        request,
        "delivery.html",
        {
            "page": "delivery",
            "row": row,
            # Admins only: a raw message holds its unsubscribe link's token, maybe in base64.
            "attachments": await _attachments(request, row),
            "raw": row.message[:RAW_SHOWN_CHARS] if session_of(request).is_admin else None,
            "cut": len(row.message) > RAW_SHOWN_CHARS,
            "actionable": row.state in RETRYABLE,
            "history": await store.audit_entries(target=f"delivery:{row.id}", limit=50),
            "failures": await store.failed_attempts(row.id),
            "waiting": (await request.app[APP_KEY].waiting([row.id])).get(row.id),
            "notice": request.query.get("notice", ""),
        },
    )


async def post_retry(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    row = await _delivery(request)
    if not await app.retry(row.id):
        raise Denied(409, "不能重试 Cannot retry", f"只能重试失败或放弃的记录；当前 {row.state}")
    await audit(request, "retry", f"delivery:{row.id}", f"from={row.state} to={row.recipient}")
    raise redirect(f"/deliveries/{row.id}", notice="retried")


async def post_resend(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    row = await _delivery(request)
    new_id = await app.resend(row)
    if new_id is None:
        raise Denied(409, "不能重发 Cannot resend", f"只能重发失败或放弃的记录；当前 {row.state}")
    await audit(request, "resend", f"delivery:{row.id}", f"new={new_id} to={row.recipient}")
    await audit(request, "resend", f"delivery:{new_id}", f"from={row.id}")
    raise redirect(f"/deliveries/{new_id}", notice="resent")


# --- 受众 -----------------------------------------------------------------------------------


async def get_audiences_page(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    store = request.app[CONSOLE_STORE_KEY]
    return render(
        request,
        "audiences.html",
        {
            "page": "audiences",
            "audiences": sorted(app.schedule.audiences.values(), key=lambda a: a.name),
            "problems": views.audience_problems(app),
            "unsubscribes": await store.unsubscribes(),
            "notice": request.query.get("notice", ""),
        },
    )


async def post_resubscribe(request: web.Request) -> web.Response:
    store = request.app[CONSOLE_STORE_KEY]
    email = form(request).get("email", "").strip()
    if not email or len(email) > MAX_FILTER_LENGTH:
        raise Denied(422, "参数错误 Bad parameter", "email: 必填 required")
    if not await store.resubscribe(email):
        raise Denied(404, "未找到 Not found", "该地址没有退订记录 not unsubscribed")
    await audit(request, "resubscribe", f"email:{email.lower()}")
    raise redirect("/audiences", notice="resubscribed")


# --- 配置 -----------------------------------------------------------------------------------


async def get_config_page(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    store = request.app[CONSOLE_STORE_KEY]
    today = app.now().date()
    hooks = []
    for hook in sorted(app.schedule.hooks.values(), key=lambda h: h.id):
        hooks.append(
            {
                "hook": hook,
                "secret_set": hook.secret_env in app.hook_secrets,
                "recent": await store.recent_hook_rows(hook.id),
            }
        )
    return render(
        request,
        "config.html",
        {
            "page": "config",
            "notice": request.query.get("notice"),
            "imported_year": request.query.get("year", "")[:4],
            "problems": [views.split_problem(e) for e in app.config_errors],
            "warnings": app.warnings,
            "loaded_at": app.loaded_at,
            "reload_failed_at": app.reload_failed_at,
            "files": app.schedule.files,
            "tables": views.holiday_tables(app, list(range(today.year - 1, today.year + 2))),
            "hooks": hooks,
            # Editors do not read the audit log (issue 22).
            "audit": []
            if session_of(request).role == ROLE_EDITOR
            else await store.audit_entries(limit=20),
            "settings": app.settings,
        },
    )


async def get_audit_page(request: web.Request) -> web.Response:
    store = request.app[CONSOLE_STORE_KEY]
    return render(
        request,
        "audit.html",
        {"page": "audit", "entries": await store.audit_entries(limit=500)},
    )

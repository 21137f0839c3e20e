"""The web console at `/`: server-rendered pages for office staff (aiohttp-jinja2).

Every page passes through `guard`: signed out it answers the sign-in page, a POST needs the
session's CSRF token and the admin role, and an error is an HTML page, never JSON or a
traceback. No external resources; a strict Content-Security-Policy on every answer.
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from notifier import __version__
from notifier.constants import DB_RETRY_AFTER_SECONDS
from notifier.errors import StoreError
from notifier.ledger.console import ConsoleStore
from notifier.service import App
from notifier.web.auth import (
    CSRF_FIELD,
    ROLE_ADMIN,
    ROLE_EDITOR,
    SCOPE_ADMIN,
    SIGNIN_LINK_PATH,
    SIGNIN_LINK_SECONDS,
    Auth,
    Session,
    client_address,
    csrf_ok,
    retry_after,
)
from notifier.web.common import APP_KEY, ApiError
from notifier.web.console_views import ViewCache

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The rendered email shown in the event page's sandboxed iframe: its own inline styles, nothing
# else (no scripts, no network); `sandbox` also gives it an opaque origin.
PREVIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
NAV = (
    ("overview", "/", "概览", "Overview"),
    ("calendar", "/calendar", "日历", "Calendar"),
    ("events", "/events", "事件", "Events"),
    ("deliveries", "/deliveries", "投递记录", "Deliveries"),
    ("audiences", "/audiences", "受众", "Audiences"),
    ("config", "/config", "配置", "Config"),
)
MAX_FORM_BYTES = 16 * 1024

AUTH_KEY = web.AppKey("console_auth", Auth)
CONSOLE_STORE_KEY = web.AppKey("console_store", ConsoleStore)
SESSION_KEY = web.RequestKey("console_session", Session)
FORM_KEY = web.RequestKey("console_form", dict[str, str])
VIEWS_KEY = web.AppKey("console_views", ViewCache)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Denied(Exception):
    """A console request refused with an HTML page (403 CSRF or role, 404, 422...)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def local(app: App, ts: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, app.settings.tz).strftime(fmt)


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    app = request.app[APP_KEY]
    session = request.get(SESSION_KEY)
    base = {
        "nav": NAV,
        "session": session,
        "is_admin": bool(session and session.is_admin),
        "can_edit": bool(session and session.can_edit),
        "role": session.role if session else "",
        "csrf_field": CSRF_FIELD,
        "csrf": session.csrf if session else "",
        "org": app.settings.org_name,
        "version": __version__,
        "local": lambda ts, fmt="%Y-%m-%d %H:%M": local(app, ts, fmt),
        "path": request.path,
        "request_notice": request.query.get("notice", ""),
        "page": "error",
    }
    response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    response.headers.update(HEADERS)
    return response


def error_page(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    return render(request, "error.html", {"title": title, "detail": detail}, status=status)


def database_unavailable_page(request: web.Request, exc: StoreError) -> web.Response:
    """503 with Retry-After: the database is away (weather, not a bug; its error is logged)."""
    log.warning(
        "console request refused: database unavailable",
        extra={"action": "console_db_unavailable", "path": request.path, "error": str(exc)},
    )
    response = error_page(
        request,
        503,
        "数据库暂不可用 Database unavailable",
        f"服务暂时无法读写数据库，请 {DB_RETRY_AFTER_SECONDS} 秒后重试。"
        f"The database cannot be reached for now: try again in {DB_RETRY_AFTER_SECONDS} s.",
    )
    response.headers["Retry-After"] = str(DB_RETRY_AFTER_SECONDS)
    return response


def signin_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    """The sign-in form, bound to this browser by its sign-in cookie (set here if missing)."""
    auth = request.app[AUTH_KEY]
    target = request.path_qs if request.method == "GET" else "/"
    browser = auth.signin_browser(request) or secrets.token_urlsafe(24)
    response = render(
        request,
        "signin.html",
        {
            "error": error,
            "form_token": auth.signin_form_token(browser),
            "next": safe_next(target) if request.path != "/signin" else "/",
            "enabled": auth.enabled,
            "link_path": SIGNIN_LINK_PATH,
            "link_minutes": SIGNIN_LINK_SECONDS // 60,
            "page": "signin",
        },
        status=status,
    )
    auth.set_signin_cookie(response, browser)
    return response


async def form_of(request: web.Request, *, upload: bool = False) -> Mapping[str, str]:
    """The form's text fields; with `upload`, each file field's content as text (UTF-8, or
    GB18030 as Excel and WPS save CSV on a Chinese Windows), up to the HTTP body limit
    (NOTIFIER_HTTP__MAX_BODY_BYTES, 256 KB: some 4,000 recipients)."""
    http = request.app[APP_KEY].settings.http
    limit = http.max_body_bytes if upload else MAX_FORM_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise Denied(413, "请求过大 Request too large", f"表单最大 {limit} 字节")
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {}
    data = await request.post()
    out = {k: v for k, v in data.items() if isinstance(v, str)}
    for k, v in data.items():
        if upload and isinstance(v, web.FileField):
            raw = v.file.read(limit + 1)
            try:
                out[k] = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                out[k] = raw.decode("gb18030", errors="replace")
    return out


def guard(
    handler: Handler,
    *,
    action: bool = False,
    edit: bool = False,
    admin_page: bool = False,
    upload: bool = False,
) -> Handler:
    """Sign-in, CSRF and role checks, HTML errors and security headers around a page.

    `action`: a POST only admins may make; `edit`: a POST admins and editors may make;
    `admin_page`: a page editors may not read (the audit log)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        app = request.app[APP_KEY]
        auth = request.app[AUTH_KEY]
        try:
            # Sessions also exist without an admin token: those of one-time links.
            session = await auth.session(request, now=app.clock())
            if session is None:
                if request.method == "POST":
                    raise Denied(403, "未登录 Signed out", "请先登录。Sign in first.")
                return signin_page(request)
            request[SESSION_KEY] = session
            if admin_page and session.role == ROLE_EDITOR:
                raise Denied(
                    403,
                    "无权查看 Not allowed",
                    "编辑者不能查看审计日志。Editors cannot read the audit log.",
                )
            if request.method == "POST":
                form = await form_of(request, upload=upload)
                if not csrf_ok(session, form.get(CSRF_FIELD)):
                    raise Denied(
                        403,
                        "表单已失效 Invalid form",
                        "缺少或错误的 CSRF 令牌，请刷新页面后重试。"
                        "The form's CSRF token is missing or wrong: reload the page.",
                    )
                if edit and not session.can_edit:
                    raise Denied(
                        403,
                        "只读账号 Read-only",
                        "查看者不能编辑。A viewer cannot edit.",
                    )
                if action and not session.is_admin:
                    raise Denied(
                        403,
                        "只读账号 Read-only",
                        "查看者不能执行操作。A viewer cannot act.",
                    )
                request[FORM_KEY] = dict(form)
            response = await handler(request)
        except Denied as exc:
            return error_page(request, exc.status, exc.title, exc.detail)
        except ApiError as exc:
            return error_page(request, exc.status, exc.error, exc.detail)
        except web.HTTPRedirection:
            raise
        except web.HTTPException as exc:
            return error_page(request, exc.status, exc.reason, exc.text or exc.reason)
        except StoreError as exc:
            return database_unavailable_page(request, exc)
        except Exception as exc:
            log.exception(
                "console request failed",
                extra={"action": "console_error", "error": type(exc).__name__},
            )
            return error_page(
                request, 500, "出错了 Internal error", "意外错误，请查看服务日志。See the log."
            )
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return wrapped


def form(request: web.Request) -> dict[str, str]:
    return request[FORM_KEY] if FORM_KEY in request else {}


def session_of(request: web.Request) -> Session:
    return request[SESSION_KEY]


async def audit(request: web.Request, action: str, target: str, detail: str = "") -> None:
    app = request.app[APP_KEY]
    session = request.get(SESSION_KEY)
    await request.app[CONSOLE_STORE_KEY].audit(
        action,
        role=session.role if session else "anonymous",
        target=target,
        detail=detail,
        client=client_address(request),
        now=app.clock(),
    )


def redirect(location: str, **query: Any) -> web.HTTPSeeOther:
    pairs = {k: v for k, v in query.items() if v not in (None, "")}
    return web.HTTPSeeOther(location + ("?" + urlencode(pairs) if pairs else ""))


def day_bounds(app: App, day: date) -> tuple[float, float]:
    tz = app.settings.tz
    start = datetime.combine(day, time(0), tz)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


# --- sign-in -------------------------------------------------------------------------------


# The longest `next` kept (a page's own address; anything longer is not one of ours).
MAX_NEXT_LENGTH = 2048


def safe_next(value: str) -> str:
    """Only a path of this site, else "/": one `/` then a character that is neither `/` nor
    `\\`, and no control character or whitespace anywhere (browsers drop a tab or a line
    break inside a URL, so `/<TAB>/evil.example` would become `//evil.example`: another
    host). Nothing is stripped or repaired: anything doubtful goes to the overview."""
    if not value.startswith("/") or len(value) > MAX_NEXT_LENGTH:
        return "/"
    if value[1:2] in ("/", "\\") or "\\" in value:
        return "/"
    if any(ch.isspace() or unicodedata.category(ch)[0] in "CZ" for ch in value):
        return "/"
    return value


async def post_signin(request: web.Request) -> web.StreamResponse:
    """Sign in with a token; a database fault on the way is a 503 page, not a 500."""
    try:
        return await _sign_in(request)
    except Denied as exc:
        return error_page(request, exc.status, exc.title, exc.detail)
    except StoreError as exc:
        return database_unavailable_page(request, exc)


async def _sign_in(request: web.Request) -> web.StreamResponse:
    app = request.app[APP_KEY]
    auth = request.app[AUTH_KEY]
    client = client_address(request)
    if not auth.enabled:
        raise Denied(
            503,
            "控制台未启用 Console disabled",
            "请设置 NOTIFIER_ADMIN_TOKEN，或打开 notifier run 启动时打印的一次性登录链接。"
            "Set NOTIFIER_ADMIN_TOKEN, or open the one-time sign-in link printed at start.",
        )
    data = await form_of(request)
    if not auth.check_signin_form_token(request, data.get(CSRF_FIELD, "")):
        raise Denied(
            403,
            "表单已失效 Invalid form",
            "登录表单已过期、缺少 CSRF 令牌或不属于此浏览器，请刷新登录页（需允许 Cookie）。"
            "The sign-in form expired or was not made for this browser: reload the sign-in"
            " page (cookies must be allowed).",
        )
    # Checked under the limit: refused unseen past it; a wrong token counts (auth.py).
    attempt = await auth.limiter.attempt(
        SCOPE_ADMIN,
        client,
        now=app.clock(),
        check=lambda: auth.role_for(data.get("token", "")) is not None,
    )
    if attempt.wait > 0:
        seconds = retry_after(attempt.wait)
        response = signin_page(
            request,
            error=f"登录失败次数过多，请 {seconds} 秒后再试。"
            f"Too many failed sign-ins: try again in {seconds} s.",
            status=429,
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    role = auth.role_for(data.get("token", "")) if attempt.ok else None
    if role is None:
        await audit(request, "sign_in_failed", "console")
        log.warning("console sign-in failed", extra={"action": "sign_in_failed"})
        return signin_page(request, error="令牌错误。Wrong token.", status=401)
    response = web.HTTPSeeOther(safe_next(data.get("next", "/")))
    await auth.start(response, role=role, client=client, now=app.clock())
    response.del_cookie(auth.signin_cookie, path="/")
    request[SESSION_KEY] = Session(role, "", "")
    await audit(request, "sign_in", "console")
    log.info("console sign-in", extra={"action": "sign_in", "role": role})
    raise response


async def get_signin_link(request: web.Request) -> web.StreamResponse:
    """A one-time link (printed at start when no admin token is set): an admin session, once.

    A database fault is the 503 page; a used, expired or unknown link a 403 page that says
    how to get a new one. Once an admin token is set, links no longer sign anyone in.
    """
    app = request.app[APP_KEY]
    auth = request.app[AUTH_KEY]
    try:
        if auth.enabled or not await auth.use_signin_link(
            request.query.get("token", ""), now=app.clock()
        ):
            log.warning("console sign-in link refused", extra={"action": "sign_in_failed"})
            return error_page(
                request,
                403,
                "链接无效 Link not valid",
                "一次性登录链接已使用、已过期或无效；重启 notifier run 可获得新链接，"
                "或设置 NOTIFIER_ADMIN_TOKEN 后用令牌登录。"
                "This one-time link was used, has expired or is unknown: restart"
                " `notifier run` for a new one, or set NOTIFIER_ADMIN_TOKEN and sign in with it.",
            )
        response = web.HTTPSeeOther("/")
        await auth.start(response, role=ROLE_ADMIN, client=client_address(request), now=app.clock())
        request[SESSION_KEY] = Session(ROLE_ADMIN, "", "")
        await audit(request, "sign_in", "console", "one-time link")
        log.info("console sign-in by link", extra={"action": "sign_in", "role": ROLE_ADMIN})
    except StoreError as exc:
        return database_unavailable_page(request, exc)
    raise response


async def announce_signin_link(web_app: web.Application, host: str, port: int) -> str | None:
    """With no admin token set, a one-time sign-in link on the listening address, logged and
    printed (a first run would otherwise show a sign-in page nobody can use); its URL."""
    app = web_app[APP_KEY]
    auth = web_app[AUTH_KEY]
    if auth.enabled:
        return None
    try:
        token = await auth.issue_signin_link(now=app.clock())
    except StoreError as exc:  # the service still starts; a restart prints a link
        log.warning(
            "no console sign-in link: the database is unavailable",
            extra={"action": "console_signin_link_failed", "error": str(exc)},
        )
        return None
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}{SIGNIN_LINK_PATH}?token={token}"
    minutes = SIGNIN_LINK_SECONDS // 60
    log.warning(
        f"no NOTIFIER_ADMIN_TOKEN: console one-time sign-in link, valid once for {minutes} min:"
        f" {url}",
        extra={"action": "console_signin_link", "minutes": minutes},
    )
    print(
        f"控制台一次性登录链接（{minutes} 分钟内有效，仅可使用一次；"
        "设置 NOTIFIER_ADMIN_TOKEN 后不再提供）\n"
        f"Console one-time sign-in link (valid once, for {minutes} min;"
        f" none once NOTIFIER_ADMIN_TOKEN is set):\n  {url}",
        flush=True,
    )
    return url


async def get_signin(request: web.Request) -> web.StreamResponse:
    """Signed out, `guard` answers the sign-in page; signed in, there is nothing to do here."""
    raise web.HTTPSeeOther("/")


async def post_signout(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    session = session_of(request)
    await audit(request, "sign_out", "console")
    response = web.HTTPSeeOther("/")
    await auth.end(session, response)
    raise response


CONSOLE_PATHS = frozenset(
    {
        "/",
        "/calendar",
        "/events",
        "/events/{event_id}",
        "/events/new",
        "/events/{event_id}/edit",
        "/events/{event_id}/delete",
        "/events/{event_id}/history",
        "/history",
        "/history/{version_id}",
        "/history/{version_id}/revert",
        "/events/{event_id}/preview",
        "/events/{event_id}/send",
        "/deliveries",
        "/deliveries/export",
        "/deliveries/{delivery_id}",
        "/deliveries/{delivery_id}/retry",
        "/deliveries/{delivery_id}/resend",
        "/audiences",
        "/audiences/resubscribe",
        "/suppressions",
        "/suppressions/remove",
        "/audiences/{name}/edit",
        "/config",
        "/config/holidays",
        "/config/holidays/preview",
        "/config/holidays/save",
        "/audit",
        "/signin",
        "/signin/once",
        "/signout",
        "/static",
    }
)


def is_console_route(canonical: str) -> bool:
    """Whether a route belongs to the console (HTML pages), not the JSON API's document."""
    return canonical in CONSOLE_PATHS

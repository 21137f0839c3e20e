"""RFC 8058 one-click unsubscribe: a confirmation page on GET, the change on POST."""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from notifier.service import App
from notifier.web.common import APP_KEY, MAX_TOKEN_LENGTH, ApiError

log = logging.getLogger(__name__)

_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>退订 Unsubscribe</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto; padding: 0 1em">
{content}
</body></html>
"""


# The confirmation page has one button that unsubscribes: no other site may frame it (a
# clickjacking page would lay its own bait over the button); its own inline style only, and a
# form posting to this site. The token is in the URL: no Referer, no cache.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The masked address shows at most this much of its local part: a third of it, never more
# than this many characters, and nothing of a local part shorter than three.
MASK_SHOWN_MAX = 3


def _page(content: str, status: int = 200) -> web.Response:
    return web.Response(
        text=_PAGE.format(content=content),
        status=status,
        content_type="text/html",
        headers=PAGE_HEADERS,
    )


def mask_address(address: str) -> str:
    """`so•••@example.com`: enough for its owner to recognise, little for anyone else who
    holds the link (proxy logs, link scanners, a forwarded message). At most a third of the
    local part shows (`ab@` shows none of it), never all of it."""
    local, _, domain = address.rpartition("@")
    return f"{local[: min(len(local) // 3, MASK_SHOWN_MAX)]}•••@{domain}"


def _unsubscribe_email(app: App, token: str) -> str:
    # compare_digest refuses non-ASCII strings: such a token is simply not ours.
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        email = None
    else:
        email = app.unsubscribed_address(token)
    if email is None:
        raise ApiError(400, "invalid token", "this unsubscribe link is invalid or was altered")
    return email


async def get_unsubscribe(request: web.Request) -> web.Response:
    """A confirmation page only: link scanners fetch with GET, so GET never unsubscribes."""
    app = request.app[APP_KEY]
    token = request.query.get("token", "")
    email = mask_address(_unsubscribe_email(app, token))
    action = f"unsubscribe?token={quote(token, safe='')}"
    return _page(
        f"<h1>退订 Unsubscribe</h1>"
        f"<p>确认不再向 <b>{html.escape(email)}</b> 发送"
        f"{html.escape(app.settings.org_name)}的邮件？</p>"
        f"<p>Stop sending these emails to <b>{html.escape(email)}</b>?</p>"
        f'<form method="post" action="{html.escape(action)}">'
        '<input type="hidden" name="page" value="1">'
        '<button type="submit">确认退订 Unsubscribe</button></form>'
    )


async def post_unsubscribe(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    token = request.query.get("token", "")
    form: Mapping[str, Any] = {}
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
    if not token and isinstance(form.get("token"), str):
        token = str(form["token"])
    address = _unsubscribe_email(app, token)
    await app.unsubscribe(address, source="one-click")
    log.info("unsubscribed", extra={"action": "unsubscribed", "source": "one-click"})
    email = mask_address(address)
    if form.get("page"):
        return _page(
            "<h1>已退订 Unsubscribed</h1>"
            f"<p>{html.escape(email)} 将不再收到这些邮件。</p>"
            f"<p>{html.escape(email)} will receive no more of these emails.</p>"
        )
    return web.json_response({"unsubscribed": email})

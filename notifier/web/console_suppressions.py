"""The console's suppression list (issue 21): addresses that bounced, why, the server's words,
and a way to take one off the list (audited)."""

from __future__ import annotations

from aiohttp import web

from notifier.web.common import APP_KEY
from notifier.web.console import Denied, audit, form, redirect, render

# The longest address a form may name (RFC 5321: 254).
MAX_ADDRESS = 254


async def get_suppressions_page(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    return render(
        request,
        "suppressions.html",
        {
            "page": "audiences",  # a part of the audiences section (linked from its page)
            "entries": await app.suppressed_addresses(),
            "notice": request.query.get("notice", ""),
        },
    )


async def post_unsuppress(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    address = form(request).get("address", "").strip()
    if not address or len(address) > MAX_ADDRESS:
        raise Denied(422, "参数错误 Bad parameter", "address: 必填 required")
    if not await app.unsuppress(address):
        raise Denied(404, "未找到 Not found", "该地址不在抑制名单中 not suppressed")
    await audit(request, "unsuppress", f"email:{address.lower()}")
    raise redirect("/suppressions", notice="removed")

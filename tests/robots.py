"""A local stand-in for the chat platforms: it answers, signs and throttles as each documents.

WeCom (`/cgi-bin/webhook/send?key=K`), DingTalk (`/robot/send?access_token=T&timestamp&sign`),
Feishu (`/open-apis/bot/v2/hook/TOKEN`) and a Standard Webhooks receiver (`/hooks/NAME`).
Like the real ones it answers HTTP 200 with the verdict in the body (errcode / code), checks
the signatures exactly as documented, enforces the byte limits and counts sends per robot in
a sliding minute. DingTalk's 10-minute penalty after a throttle is `penalty` seconds here, so
tests can make it short. `script` answers the next requests with canned replies (faults).

Run alone (for bench/chat.py): `python -m tests.robots PORT` serves robots that any key,
token or hook name reaches, with limits as configured by `--limits`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

WECOM_MARKDOWN_BYTES = 4096
WECOM_TEXT_BYTES = 2048
DINGTALK_TEXT_BYTES = 20_000
FEISHU_BODY_BYTES = 20 * 1024
SIGN_WINDOW_S = 3600  # DingTalk and Feishu: a timestamp within an hour of the server's clock
IP_ECHO = "from ip: 127.0.0.1"
# Feishu custom bot message types, and the tags of a `post` (rich text) with the fields each
# requires (the custom bot guide: 发送富文本消息).
FEISHU_TYPES = ("text", "post", "image", "share_chat", "interactive")
POST_TAGS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "a": ("text", "href"),
    "at": ("user_id",),
    "img": ("image_key",),
}
POST_LOCALES = ("zh_cn", "en_us", "ja_jp")
THROTTLED_DINGTALK = {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}


@dataclass
class Robot:
    """One robot (or webhook receiver) and what it has seen."""

    secret: str | None = None
    keyword: str | None = None
    per_minute: int | None = None  # None: no limit
    per_second: int | None = None
    penalty: float = 600.0  # DingTalk: seconds of throttling after going over the limit
    window: float = 60.0  # the counting window of `per_minute` (short in tests)
    script: list[tuple[int, Any]] = field(default_factory=list)  # (HTTP status, JSON body)
    gone: bool = False  # webhook receiver: answer 410
    received: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    throttled: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # every request's raw body, in order
    refused: list[str] = field(default_factory=list)  # Feishu: where each bad body was wrong
    _times: deque[float] = field(default_factory=deque)
    _penalty_until: float = 0.0

    def over_limit(self, now: float) -> bool:
        """Count this request; True if it is over the robot's per-second or per-minute limit."""
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        if self.per_minute is not None and len(self._times) > self.per_minute:
            return True
        if self.per_second is not None:
            last_second = sum(1 for t in self._times if t > now - 1)
            return last_second > self.per_second
        return False


def feishu_problem(data: Any) -> str | None:
    """Why Feishu would refuse this body (it answers 9499 Bad Request), or None.

    `text`: content.text. `interactive`: a card object. `post`: content.post maps a locale to
    {title?, content: [[element, ...], ...]}, each element a known tag with its fields, an
    `a` with an http(s) href and an `at` with a user id ("all" for everyone).
    """
    if not isinstance(data, dict) or data.get("msg_type") not in FEISHU_TYPES:
        return "msg_type"
    kind, content = data["msg_type"], data.get("content")
    if kind == "interactive":
        return None if isinstance(data.get("card"), dict) else "card"
    if kind == "text":
        ok = isinstance(content, dict) and isinstance(content.get("text"), str)
        return None if ok else "content.text"
    if kind != "post":
        return None
    post = content.get("post") if isinstance(content, dict) else None
    if not isinstance(post, dict) or not post or set(post) - set(POST_LOCALES):
        return "content.post"
    for locale, body in post.items():
        where = f"content.post.{locale}"
        if not isinstance(body, dict) or not isinstance(body.get("title", ""), str):
            return where
        paragraphs = body.get("content")
        if not isinstance(paragraphs, list) or not all(isinstance(p, list) for p in paragraphs):
            return f"{where}.content"
        for i, paragraph in enumerate(paragraphs):
            for j, element in enumerate(paragraph):
                at = f"{where}.content[{i}][{j}]"
                if not isinstance(element, dict) or element.get("tag") not in POST_TAGS:
                    return f"{at}.tag"
                for name in POST_TAGS[element["tag"]]:
                    if not isinstance(element.get(name), str):
                        return f"{at}.{name}"
                if element["tag"] == "a" and not element["href"].startswith(
                    ("http://", "https://")
                ):
                    return f"{at}.href"
                if element["tag"] == "at" and not element["user_id"]:
                    return f"{at}.user_id"
    return None


def _digest_b64(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


class Platforms:
    """The stand-in server; `robots` maps a WeCom key, DingTalk token, Feishu token or webhook
    name to its Robot. With `open_robots`, an unknown name gets a fresh Robot (bench)."""

    def __init__(self, *, open_robots: dict[str, Any] | None = None) -> None:
        self.robots: dict[str, Robot] = {}
        self.open_robots = open_robots
        self.runner: web.AppRunner | None = None
        self.port = 0

    def add(self, name: str, **kw: Any) -> Robot:
        self.robots[name] = Robot(**kw)
        return self.robots[name]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _robot(self, name: str) -> Robot | None:
        if name not in self.robots and self.open_robots is not None:
            self.robots[name] = Robot(**self.open_robots)
        return self.robots.get(name)

    async def start(self) -> Platforms:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/cgi-bin/webhook/send", self.wecom)
        app.router.add_post("/robot/send", self.dingtalk)
        app.router.add_post("/open-apis/bot/v2/hook/{token}", self.feishu)
        app.router.add_post("/hooks/{name}", self.webhook)
        app.router.add_get("/stats/{name}", self.stats)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @staticmethod
    def _scripted(robot: Robot) -> web.Response | None:
        if robot.script:
            status, body = robot.script.pop(0)
            return web.json_response(body, status=status)
        return None

    async def stats(self, request: web.Request) -> web.Response:
        """What one robot saw (for bench/chat.py, which runs the stand-in in a process)."""
        robot = self.robots.get(request.match_info["name"]) or Robot()
        return web.json_response(
            {
                "requests": robot.requests,
                "received": len(robot.received),
                "throttled": robot.throttled,
            }
        )

    # --- WeCom ---

    async def wecom(self, request: web.Request) -> web.Response:
        robot = self._robot(request.query.get("key", ""))
        if robot is None:
            return web.json_response(
                {"errcode": 93000, "errmsg": f"invalid webhook url, {IP_ECHO}"}
            )
        robot.requests += 1
        robot.bodies.append(await request.read())
        scripted = self._scripted(robot)
        if scripted is not None:
            return scripted
        if robot.over_limit(time.monotonic()):
            robot.throttled += 1
            return web.json_response(
                {"errcode": 45009, "errmsg": "api freq out of limit, " + IP_ECHO}
            )
        data = await request.json()
        kind = data.get("msgtype")
        if kind not in ("markdown", "text"):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        content = data[kind]["content"]
        limit = WECOM_MARKDOWN_BYTES if kind == "markdown" else WECOM_TEXT_BYTES
        if len(content.encode()) > limit:
            return web.json_response(
                {"errcode": 40058, "errmsg": f"{kind}.content exceed max length {limit}"}
            )
        robot.received.append(data)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    # --- DingTalk ---

    async def dingtalk(self, request: web.Request) -> web.Response:
        robot = self._robot(request.query.get("access_token", ""))
        if robot is None:
            return web.json_response({"errcode": 300005, "errmsg": "token is not exist"})
        robot.requests += 1
        robot.bodies.append(await request.read())
        scripted = self._scripted(robot)
        if scripted is not None:
            return scripted
        now = time.monotonic()
        if now < robot._penalty_until:
            robot.throttled += 1
            return web.json_response(THROTTLED_DINGTALK)
        if robot.secret is not None:
            stamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
            if not stamp.isdigit() or abs(int(stamp) / 1000 - time.time()) > SIGN_WINDOW_S:
                return web.json_response({"errcode": 310000, "errmsg": "invalid timestamp"})
            expected = _digest_b64(robot.secret.encode(), f"{stamp}\n{robot.secret}".encode())
            if not hmac.compare_digest(expected, sign):
                return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        if robot.over_limit(now):
            robot.throttled += 1
            robot._penalty_until = now + robot.penalty
            return web.json_response(THROTTLED_DINGTALK)
        data = await request.json()
        text = data.get("markdown", {}).get("text", "") or data.get("text", {}).get("content", "")
        if len(text.encode()) > DINGTALK_TEXT_BYTES:
            return web.json_response({"errcode": 460101, "errmsg": "message too long"})
        if robot.keyword and robot.keyword not in text:
            return web.json_response({"errcode": 310000, "errmsg": "keywords not in content"})
        robot.received.append(data)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    # --- Feishu ---

    async def feishu(self, request: web.Request) -> web.Response:
        robot = self._robot(request.match_info["token"])
        if robot is None:
            return web.json_response(
                {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}
            )
        robot.requests += 1
        robot.bodies.append(await request.read())
        scripted = self._scripted(robot)
        if scripted is not None:
            return scripted
        raw = await request.read()
        if len(raw) > FEISHU_BODY_BYTES:
            return web.json_response({"code": 9499, "msg": "Bad Request"})
        data = json.loads(raw)
        if robot.secret is not None:
            stamp, sign = str(data.get("timestamp", "")), str(data.get("sign", ""))
            ok = stamp.isdigit() and abs(int(stamp) - time.time()) <= SIGN_WINDOW_S
            expected = _digest_b64(f"{stamp}\n{robot.secret}".encode(), b"")
            if not ok or not hmac.compare_digest(expected, sign):
                return web.json_response(
                    {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
                )
        if robot.over_limit(time.monotonic()):
            robot.throttled += 1
            return web.json_response({"code": 11232, "msg": "frequency limited"})
        if robot.keyword and robot.keyword not in raw.decode():
            return web.json_response({"code": 19024, "msg": "Key Words Not Found"})
        problem = feishu_problem(data)
        if problem is not None:
            robot.refused.append(problem)
            return web.json_response({"code": 9499, "msg": "Bad Request"})
        robot.received.append(data)
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    # --- Standard Webhooks receiver ---

    async def webhook(self, request: web.Request) -> web.Response:
        robot = self._robot(request.match_info["name"])
        if robot is None:
            return web.json_response({"error": "no such hook"}, status=404)
        robot.requests += 1
        robot.bodies.append(await request.read())
        scripted = self._scripted(robot)
        if scripted is not None:
            return scripted
        if robot.gone:
            return web.json_response({"error": "gone"}, status=410)
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            Webhook(robot.secret or "").verify(raw, headers)
        except WebhookVerificationError as exc:
            return web.json_response({"error": str(exc)}, status=401)
        robot.headers.append(headers)
        robot.received.append(json.loads(raw))
        return web.json_response({"ok": True})


async def _serve(port: int, limits: bool) -> None:
    """Serve until killed; print the port once listening (for bench/chat.py)."""
    platforms = Platforms(open_robots={"per_minute": 20 if limits else None})
    platforms.port = port
    await platforms.start()
    print(platforms.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--limits", action="store_true", help="20 per minute per robot")
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port, args.limits))
    except KeyboardInterrupt:
        pass

"""The platforms' message forms, built once when a row is made (pure: no I/O, no clock).

The row keeps the JSON body it will post, so a retry posts the same bytes; only what must be
fresh (a signature and its timestamp) is added at send time. Over a platform's limit the text
is cut on a character boundary with "…", rather than have the platform reject the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from notifier.schedules import ChannelSpec

ELLIPSIS = "…"
# WeCom: markdown content at most 4,096 bytes, text content at most 2,048 (UTF-8).
WECOM_MARKDOWN_BYTES = 4096
WECOM_TEXT_BYTES = 2048
# DingTalk documents no exact markdown limit; its answer to an oversize one is an error, so
# stay well below the 20,000 bytes its text messages allow.
DINGTALK_TEXT_BYTES = 18_000
# Feishu: the whole request body at most 20 KB; keep room for the timestamp and sign fields
# added at send time.
FEISHU_BODY_BYTES = 20 * 1024
FEISHU_SIGN_RESERVE = 128
# Outbound webhooks: receivers commonly cap bodies at 256 KiB; text beyond this is cut.
WEBHOOK_TEXT_BYTES = 64 * 1024

_URL = re.compile(r"https?://[^\s)\]>\"']+")


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """What a chat row says, before it takes a platform's form."""

    key: str
    subject: str
    text: str  # Markdown
    event_id: str
    event_title: str
    occurrence: str
    start: str
    end: str
    reminder_id: str
    reminder_label: str


def _dump(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def cut(text: str, fits: Callable[[str], bool]) -> str:
    """`text` if it fits, else its longest prefix + "…" that does (whole characters)."""
    if fits(text):
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # largest n with fits(text[:n] + ELLIPSIS)
        mid = (lo + hi + 1) // 2
        if fits(text[:mid] + ELLIPSIS):
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + ELLIPSIS


def _wecom(spec: ChannelSpec, msg: ChatMessage) -> dict[str, Any]:
    m = spec.mention
    if m.mobiles or m.all:
        # Only the text form can @ by mobile or @all.
        mobiles = [*m.mobiles, *(["@all"] if m.all else [])]
        content = cut(msg.text, lambda t: size(t) <= WECOM_TEXT_BYTES)
        text: dict[str, Any] = {"content": content, "mentioned_mobile_list": mobiles}
        if m.userids:
            text["mentioned_list"] = list(m.userids)
        return {"msgtype": "text", "text": text}
    tail = "".join(f"\n<@{u}>" for u in m.userids)
    content = cut(msg.text, lambda t: size(t + tail) <= WECOM_MARKDOWN_BYTES) + tail
    return {"msgtype": "markdown", "markdown": {"content": content}}


def _dingtalk(spec: ChannelSpec, msg: ChatMessage) -> dict[str, Any]:
    m = spec.mention
    # DingTalk shows an @ only when the text names it too.
    tail = "".join(f" @{x}" for x in (*m.mobiles, *m.userids))
    tail = f"\n\n{tail.strip()}" if tail else ""
    text = cut(msg.text, lambda t: size(t + tail) <= DINGTALK_TEXT_BYTES) + tail
    return {
        "msgtype": "markdown",
        "markdown": {"title": msg.subject[:64], "text": text},
        "at": {"atMobiles": list(m.mobiles), "atUserIds": list(m.userids), "isAtAll": m.all},
    }


def _feishu(spec: ChannelSpec, msg: ChatMessage) -> dict[str, Any]:
    m = spec.mention
    tail = "".join(f"<at id={u}></at>" for u in m.userids) + ("<at id=all></at>" if m.all else "")
    tail = f"\n{tail}" if tail else ""

    def body(text: str) -> dict[str, Any]:
        return {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "elements": [{"tag": "markdown", "content": text + tail}],
            },
        }

    limit = FEISHU_BODY_BYTES - FEISHU_SIGN_RESERVE
    return body(cut(msg.text, lambda t: size(_dump(body(t))) <= limit))


def _webhook(spec: ChannelSpec, msg: ChatMessage) -> dict[str, Any]:
    text = cut(msg.text, lambda t: size(t) <= WEBHOOK_TEXT_BYTES)
    return {
        "type": "notifier.reminder",
        "id": msg.key,
        "event": {"id": msg.event_id, "title": msg.event_title, "start": msg.start, "end": msg.end},
        "occurrence": msg.occurrence,
        "reminder": {"id": msg.reminder_id, "label": msg.reminder_label},
        "subject": msg.subject,
        "text": text,
        "links": list(dict.fromkeys(_URL.findall(msg.text))),
    }


_FORMS: dict[str, Callable[[ChannelSpec, ChatMessage], dict[str, Any]]] = {
    "wecom": _wecom,
    "dingtalk": _dingtalk,
    "feishu": _feishu,
    "webhook": _webhook,
}


def payload(spec: ChannelSpec, msg: ChatMessage) -> str:
    """The JSON body this channel posts for `msg` (compact, UTF-8 text)."""
    return _dump(_FORMS[spec.type](spec, msg))


def chat_text(subject: str, body: str) -> str:
    """A chat message from an email template without `chat.md`: the subject in bold, the text."""
    return f"**{subject}**\n\n{body.strip()}\n"


def posted_text(body: dict[str, Any]) -> str:
    """The Markdown (or text) inside a platform body: what the group will read."""
    if isinstance(body.get("markdown"), dict):
        md = body["markdown"]
        return str(md.get("text") or md.get("content") or "")
    if isinstance(body.get("card"), dict):
        return "\n".join(str(e.get("content", "")) for e in body["card"].get("elements", []))
    if isinstance(body.get("text"), dict):
        return str(body["text"].get("content", ""))
    return str(body.get("text", ""))

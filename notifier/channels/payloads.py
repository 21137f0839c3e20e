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

from notifier.schedule.model import ChannelSpec

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
# Feishu `post` (rich text): what becomes an `a` tag. A Markdown link, or a bare URL of
# ASCII URL characters (Chinese text often follows a URL without a space), less a trailing
# full stop or comma.
_POST_LINK = re.compile(
    r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)|(https?://[A-Za-z0-9\-._~:/?#@!$&*+,;=%]+)"
)
_URL_TAIL = ".,;:!?"
_POST_BOLD = re.compile(r"\*\*(.+?)\*\*")
_POST_CODE = re.compile(r"`([^`\n]+)`")
_POST_HEADING = re.compile(r"^#{1,6}\s+")
_POST_QUOTE = re.compile(r"^>\s?")
_POST_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_POST_BOLD_LINE = re.compile(r"^\*\*[^*\n]+\*\*$")


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
    kind: str = "reminder"  # "notice": one of the service's own notices to its admins


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
    if spec.form == "post":
        return _feishu_post(spec, msg)
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


def _feishu_post(spec: ChannelSpec, msg: ChatMessage) -> dict[str, Any]:
    """A `post` (rich text) from the chat Markdown, cut like the card to fit the body limit."""
    m = spec.mention
    ats = [{"tag": "at", "user_id": u} for u in m.userids]
    ats += [{"tag": "at", "user_id": "all"}] if m.all else []

    def body(text: str) -> dict[str, Any]:
        title, paragraphs = post_paragraphs(text, msg.subject)
        content = [*paragraphs, ats] if ats else paragraphs
        return {
            "msg_type": "post",
            "content": {"post": {"zh_cn": {"title": title, "content": content}}},
        }

    limit = FEISHU_BODY_BYTES - FEISHU_SIGN_RESERVE
    return body(cut(msg.text, lambda t: size(_dump(body(t))) <= limit))


def post_paragraphs(text: str, subject: str) -> tuple[str, list[list[dict[str, str]]]]:
    """Feishu's rich text for chat Markdown: (title, paragraphs), one paragraph a line.

    The title is the message's leading heading (`### ...`, or a line all in bold, as the
    fallback `**subject**` is), else `subject`. Links and bare URLs become `a` tags; the
    Markdown marks a post cannot show (headings, quotes, bold, code) are dropped, bullets
    read "•"; a run of blank lines is one empty paragraph.
    """
    lines = text.strip("\n").split("\n")
    title = subject
    first = lines[0].strip()
    if _POST_HEADING.match(first) or _POST_BOLD_LINE.match(first):
        shown = "".join(e["text"] for e in _post_line(first)).strip()
        if shown:
            title, lines = shown, lines[1:]
    paragraphs: list[list[dict[str, str]]] = []
    gap = False
    for line in lines:
        elements = _post_line(line)
        if not elements:
            gap = True
            continue
        if gap and paragraphs:
            paragraphs.append([{"tag": "text", "text": ""}])
        gap = False
        paragraphs.append(elements)
    return title, paragraphs


def _post_line(line: str) -> list[dict[str, str]]:
    text = _POST_HEADING.sub("", line.rstrip())
    text = _POST_QUOTE.sub("", text)
    text = _POST_BULLET.sub(lambda b: f"{b.group(1)}• ", text)
    text = _POST_CODE.sub(r"\1", _POST_BOLD.sub(r"\1", text))
    if not text.strip():
        return []
    out: list[dict[str, str]] = []
    at = 0
    for link in _POST_LINK.finditer(text):
        label, href, bare = link.groups()
        end = link.end()
        if bare:
            url = bare.rstrip(_URL_TAIL)
            if url.endswith("://"):
                continue  # no host: plain text
            end -= len(bare) - len(url)
        else:
            url = href
        if link.start() > at:
            out.append({"tag": "text", "text": text[at : link.start()]})
        out.append({"tag": "a", "text": label or url, "href": url})
        at = end
    if at < len(text):
        out.append({"tag": "text", "text": text[at:]})
    return out


def _webhook(spec: ChannelSpec, msg: ChatMessage) -> dict[str, Any]:
    text = cut(msg.text, lambda t: size(t) <= WEBHOOK_TEXT_BYTES)
    return {
        "type": f"notifier.{msg.kind}",
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
    if body.get("msg_type") == "post" and isinstance(body.get("content"), dict):
        # Feishu rich text: the title, then one line a paragraph (an @ shows as @id).
        post: dict[str, Any] = next(iter(body["content"].get("post", {}).values()), {})
        lines = [str(post.get("title", ""))]
        for paragraph in post.get("content", []):
            lines.append(
                "".join(
                    f"@{e.get('user_id', '')} " if e.get("tag") == "at" else str(e.get("text", ""))
                    for e in paragraph
                ).rstrip()
            )
        return "\n".join(lines)
    if isinstance(body.get("card"), dict):
        return "\n".join(str(e.get("content", "")) for e in body["card"].get("elements", []))
    if isinstance(body.get("text"), dict):
        return str(body["text"].get("content", ""))
    return str(body.get("text", ""))

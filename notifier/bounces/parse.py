"""Reading a message from the bounce mailbox: is it a bounce, hard or soft, and which of our
messages does it return? Pure: bytes in, a verdict out.

Bounces come as RFC 3464 delivery-status reports (Postfix, Exchange, Gmail, recent Exim) or
as plain text (classic Exim, and the Chinese hosted providers: "退信", "邮件投递失败"). Hosted
mail rarely lets a sender set its own Return-Path, so they land in the sending account's own
INBOX beside human mail: anything that is not clearly a bounce is `OTHER`, and an auto-reply
(RFC 3834 `Auto-Submitted`, out-of-office texts) is `AUTO_REPLY`; the reader touches neither.

A bounce is matched to the ledger by what the returned original carries: its Message-ID
(ours are derived from the delivery key) or our own `X-Notifier-Id` header.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

# Status codes and words that say the address does not exist (hard: suppress it). Any other
# failure (mailbox full, a spam verdict, a delay) is soft: noted on the row, nothing more.
_BAD_ADDRESS_STATUS = re.compile(r"^5\.1\.\d+$|^5\.2\.1$")
BAD_ADDRESS_WORDS = (
    "user unknown", "unknown user", "no such user", "user not found", "mailbox not found",
    "mailbox unavailable", "does not exist", "doesn't exist", "not exist", "invalid recipient",
    "recipient not found", "recipientnotfound", "address rejected", "no mailbox here",
    "account has been disabled", "account disabled", "unrouteable address",
    "用户不存在", "收件人不存在", "邮箱不存在", "地址不存在", "帐号不存在", "账号不存在",
    "无此用户", "收件人地址不存在", "该邮箱不存在", "查无此人",
)  # fmt: skip

# A plain-text bounce: who sends it, what its subject says, what its body says.
_DAEMON_FROM = re.compile(
    r"mailer-daemon|postmaster|mail delivery (sub)?system|mail delivery system|"
    r"系统退信|退信|邮件系统",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|mail delivery failed|delivery status notification|"
    r"failure notice|delivery failure|could not be delivered|non.?delivery|"
    r"退信|投递失败|发送失败|无法投递|未能送达|邮件被退回",
    re.IGNORECASE,
)
_BOUNCE_BODY = re.compile(
    r"could not be delivered|permanent error|delivery has failed|undeliverable|"
    r"following address(es)? failed|failed permanently|"
    r"投递失败|无法送达|被退回|退信原因|发送失败",
    re.IGNORECASE,
)
# Soft, not failed: "will keep trying", "delayed".
_DELAYED = re.compile(r"delayed|will (keep )?(try|retry)|still trying|延迟|仍在尝试", re.IGNORECASE)

# An auto-reply (RFC 3834, and the out-of-office texts that do not say so).
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response)|out of (the )?office|away from|"
    r"自动回复|自动答复|休假|外出|不在办公室)",
    re.IGNORECASE,
)

_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_OUR_ID = re.compile(r"^\s*X-Notifier-Id:\s*([0-9a-f]{16,64})", re.IGNORECASE | re.MULTILINE)
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SMTP_REPLY = re.compile(r"\b([45]\d\d)[ -]")
# Of the bounce, the text kept as its excerpt (the console shows it).
EXCERPT_CHARS = 1500


class Kind(enum.StrEnum):
    HARD = "hard"  # the address does not exist: suppress it
    SOFT = "soft"  # failed or delayed for another reason: note it on the row
    AUTO_REPLY = "auto-reply"  # RFC 3834 or an out-of-office text: not a bounce
    OTHER = "other"  # not a bounce: never touched


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    status: str = ""  # RFC 3463 status, "5.1.1", when the bounce gives one
    diagnostic: str = ""  # the server's words
    message_ids: tuple[str, ...] = ()  # Message-IDs of the returned original
    our_ids: tuple[str, ...] = ()  # its X-Notifier-Id values
    excerpt: str = ""

    @property
    def bounce(self) -> bool:
        return self.kind in (Kind.HARD, Kind.SOFT)


def read(raw: bytes) -> Verdict:
    """What the message `raw` is (see the module docstring)."""
    msg = message_from_bytes(raw, policy=compat32)
    if _is_dsn(msg):
        return _from_dsn(msg)
    if _is_auto_reply(msg):
        return Verdict(Kind.AUTO_REPLY)
    text = _texts(msg)
    if not _looks_like_bounce(msg, text):
        return Verdict(Kind.OTHER)
    return _from_text(msg, text)


def is_bad_address(status: str, words: str) -> bool:
    """Does a failure say the address itself does not exist?"""
    if _BAD_ADDRESS_STATUS.match(status):
        return True
    low = words.lower()
    return any(w in low for w in BAD_ADDRESS_WORDS)


def _is_dsn(msg: Message) -> bool:
    return (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == "delivery-status"
    )


def _is_auto_reply(msg: Message) -> bool:
    submitted = str(msg.get("Auto-Submitted", "")).strip().lower()
    if submitted.startswith("auto-replied"):
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond") or msg.get("X-Auto-Response-Suppress"):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.match(_header_text(msg.get("Subject", ""))))


def _looks_like_bounce(msg: Message, text: str) -> bool:
    sender = _header_text(msg.get("From", ""))
    subject = _header_text(msg.get("Subject", ""))
    null_path = str(msg.get("Return-Path", "")).strip() == "<>"
    signs = sum(
        (
            bool(_DAEMON_FROM.search(sender)) or null_path,
            bool(_BOUNCE_SUBJECT.search(subject)),
            bool(_BOUNCE_BODY.search(text)),
        )
    )
    return signs >= 2


def _from_dsn(msg: Message) -> Verdict:
    """An RFC 3464 report: the first recipient block that failed (or was delayed)."""
    status, diagnostic, action = "", "", ""
    originals: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            for block in _dsn_blocks(part):
                act = block.get("action", "").lower()
                if act in ("failed", "delayed") and not action:
                    action = act
                    status = block.get("status", "").strip()
                    diagnostic = block.get("diagnostic-code", "").partition(";")[2].strip()
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            originals.append(_part_text(part))
    human = _texts(msg)
    originals.append(human)  # some put the original's headers in the human-readable part
    if not action:
        # A report of success or relaying: not a bounce to act on.
        return Verdict(Kind.OTHER)
    soft = action == "delayed" or not status.startswith("5")
    hard = not soft and is_bad_address(status, diagnostic)
    return Verdict(
        Kind.HARD if hard else Kind.SOFT,
        status=status,
        diagnostic=diagnostic,
        message_ids=_ids(originals, own=msg.get("Message-ID")),
        our_ids=_our_ids(originals),
        excerpt=_excerpt(human, diagnostic),
    )


def _from_text(msg: Message, text: str) -> Verdict:
    """A plain-text bounce: the failure's words, its status or reply code if any."""
    statuses = _STATUS.findall(text)
    status = next((s for s in statuses if s[0] in "45"), "")
    reply = _SMTP_REPLY.search(text)
    permanent = status.startswith("5") or (
        not status and reply is not None and reply.group(1)[0] == "5"
    )
    delayed = bool(_DELAYED.search(text)) and not permanent
    hard = not delayed and is_bad_address(status, text)
    line = _diagnostic_line(text)
    return Verdict(
        Kind.HARD if hard else Kind.SOFT,
        status=status,
        diagnostic=line,
        message_ids=_ids([text], own=msg.get("Message-ID")),
        our_ids=_our_ids([text]),
        excerpt=_excerpt(text, line),
    )


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    """The fields of a delivery-status part, one dict per block (per message, then per
    recipient), keys lower-cased, folded lines joined."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the parser made each block a Message
        return [
            {k.lower(): " ".join(str(v).split()) for k, v in m.items()}
            for m in payload
            if isinstance(m, Message)
        ]
    text = payload if isinstance(payload, str) else ""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks


def _texts(msg: Message) -> str:
    """Every text/plain part (and a text/html one stripped of tags), decoded, joined."""
    out = []
    for part in msg.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            text = _part_text(part)
            if part.get_content_type() == "text/html":
                text = re.sub(r"<[^>]+>", " ", text)
            out.append(text)
    return "\n".join(out)


def _part_text(part: Message) -> str:
    if part.is_multipart() or part.get_content_type().startswith("message/"):
        inner = part.get_payload()
        if isinstance(inner, list):
            return "\n".join(m.as_string() for m in inner if isinstance(m, Message))
        return str(inner)
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "utf-8"
    if charset.lower() in ("gb2312", "gbk"):
        charset = "gb18030"  # a superset: GB2312 labels often carry GBK characters
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _header_text(value: object) -> str:
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeDecodeError):
        return str(value)


def _ids(texts: list[str], *, own: object) -> tuple[str, ...]:
    mine = str(own or "").strip()
    found = dict.fromkeys(m for t in texts for m in _MESSAGE_ID.findall(t) if m != mine)
    return tuple(found)


def _our_ids(texts: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.lower() for t in texts for m in _OUR_ID.findall(t)))


def _diagnostic_line(text: str) -> str:
    """The line of a text bounce that gives the reason (a reply code, or the words)."""
    for line in text.splitlines():
        low = line.lower()
        if _SMTP_REPLY.search(line) or any(w in low for w in BAD_ADDRESS_WORDS):
            return line.strip()[:300]
    return ""


def _excerpt(text: str, diagnostic: str) -> str:
    body = "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())
    head = f"{diagnostic}\n---\n" if diagnostic and diagnostic not in body[:EXCERPT_CHARS] else ""
    return (head + body)[:EXCERPT_CHARS]

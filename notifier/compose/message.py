"""Build the MIME message stored in the ledger and sent as is.

Hand-assembled rather than built with `email.message.EmailMessage`: with 100,000 recipients
the stdlib builder costs more than rendering and the insert together (see BENCHMARKS.md).
Encoding of header words and addresses still uses the stdlib (`email.header`, `email.utils`);
tests parse every message back with the stdlib parser.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import message_from_string
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr
from functools import lru_cache
from urllib.parse import quote

from notifier.errors import HeaderError
from notifier.ledger.attachments import MARK, marker

CRLF = "\r\n"


def message_id(key: str, domain: str) -> str:
    """A Message-ID derived from the delivery key: a retry carries the same one."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def check_header(name: str, value: str) -> str:
    """Reject CR/LF (and other control characters): a header value must stay one header."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise HeaderError(f"header {name} contains a line break: {value!r}")
    return value


# RFC 2047: an encoded-word is at most 75 characters; "=?utf-8?b?" + "?=" leave 63 for
# base64, i.e. 45 bytes of UTF-8 per word (never splitting a character).
_WORD_BYTES = 45


@lru_cache(maxsize=4096)
def encode_words(value: str) -> str:
    """RFC 2047 B-encoding, folded. The stdlib's `email.header.Header` does the same
    but costs about 0.5 ms per header: too slow for 100,000 recipients."""
    words: list[str] = []
    start = 0
    while start < len(value):
        # Take as many characters as fit, shrinking from an optimistic guess.
        end = min(len(value), start + _WORD_BYTES)
        data = value[start:end].encode("utf-8")
        while len(data) > _WORD_BYTES:
            end = start + max(1, (end - start) * _WORD_BYTES // len(data))
            data = value[start:end].encode("utf-8")
        words.append(base64.b64encode(data).decode("ascii"))
        start = end
    return f"{CRLF} ".join(f"=?utf-8?b?{w}?=" for w in words)


# RFC 5322 2.1.1: a line is at most 998 characters before its CRLF, and should be at most 78.
MAX_LINE = 998
FOLD_AT = 78
# Name and value fit one line when together at most this long (": " takes the other 2).
_ROOM = MAX_LINE - 2


def fold(name: str, value: str, *, encodable: bool = False) -> str:
    """`value` as it follows `name: `, every line within RFC 5322's 998 characters.

    Short lines are returned as they are (the common case costs one length check). A longer
    one is folded at its spaces (RFC 5322 2.2.3: CRLF before a space), aiming at 78
    characters a line. A run without spaces that still exceeds 998 is encoded as RFC 2047
    words when the header is free text (`encodable`: Subject), else refused with a
    HeaderError: a URL or an address cannot be folded or encoded.
    """
    if len(name) + 2 + len(value) <= MAX_LINE:
        return value
    lines: list[str] = []
    line = ""
    width = len(name) + 2
    for i, word in enumerate(value.split(" ")):
        piece = word if i == 0 else " " + word
        if line and width + len(line) + len(piece) > FOLD_AT:
            lines.append(line)
            line, width = piece, 0
        else:
            line += piece
    lines.append(line)
    # A line of spaces only cannot be a fold (RFC 5322 FWS): runs of spaces are encoded too.
    if all(len(text) <= MAX_LINE and text.strip() for text in lines):
        return CRLF.join(lines)
    if encodable:
        return encode_words(value)
    longest = max(len(text) for text in lines)
    raise HeaderError(
        f"header {name}: {longest} characters without a space to fold at; "
        f"RFC 5322 allows {MAX_LINE} per line (邮件头过长)"
    )


def _encode(name: str, value: str) -> str:
    check_header(name, value)
    # ASCII stays as is (URLs in List-Unsubscribe must not be encoded), within 998 a line.
    if not value.isascii():
        return encode_words(value)
    # The length test inline: a call per header showed in the webhook path's instructions.
    return value if len(name) + len(value) <= _ROOM else fold(name, value)


def _subject(value: str) -> str:
    check_header("Subject", value)
    if not value.isascii():
        return encode_words(value)
    return value if len(value) <= _ROOM - 7 else fold("Subject", value, encodable=True)


@lru_cache(maxsize=4096)
def _display_name(display: str) -> str:
    if display.isascii():
        return formataddr((display, "x@y")).rpartition(" <")[0] if display else ""
    return encode_words(display)


def _address(name: str, display: str, address: str) -> str:
    check_header(name, display)
    check_header(name, address)
    value = f"{_display_name(display)} <{address}>" if display else address
    if len(name) + len(value) <= _ROOM:
        return value
    try:
        return fold(name, value)
    except HeaderError:
        if not display:
            raise
        # A display name is a phrase: RFC 2047 words may carry what spaces cannot fold.
        return f"{encode_words(display)}{CRLF} <{address}>"


@lru_cache(maxsize=256)
def _date_header(date: datetime) -> str:
    # The same send time repeats for a whole audience.
    return format_datetime(date)


def _body(text: str) -> str:
    return base64.encodebytes(text.encode("utf-8")).decode("ascii").replace("\n", CRLF)


@dataclass(frozen=True, slots=True)
class AttachedFile:
    """An attachment as a message names it: the content is in the ledger under `digest`."""

    name: str
    mime: str
    digest: str


def _quoted_name(name: str) -> str:
    """`name` for a quoted `name=` / `filename=` parameter: as is when plain ASCII, else
    RFC 2047 words, which Outlook (and Exmail, QQ Mail) read there; Outlook shows
    "Untitled attachment" without them."""
    if name.isascii() and not any(c in name for c in '"\\\r\n'):
        return f'"{name}"'
    return f'"{encode_words(name)}"'


def attachment_part(file: AttachedFile) -> str:
    """One attachment's headers and, for body, its ledger marker (spliced at send time).

    The name goes in both forms: RFC 2231 `filename*=utf-8''...` on one line (never split
    into `filename*0*=` continuations, which QQ Mail and Exmail show as `tcmime.*.bin`) and
    RFC 2047 words in `name=` and `filename=`."""
    check_header("attachment name", file.name)
    check_header("attachment type", file.mime)
    quoted = _quoted_name(file.name)
    return CRLF.join(
        [
            f"Content-Type: {file.mime};{CRLF} name={quoted}",
            f"Content-Disposition: attachment;{CRLF} filename={quoted};"
            f"{CRLF} filename*=utf-8''{quote(file.name, safe='')}",
            "Content-Transfer-Encoding: base64",
            "",
            marker(file.digest),
        ]
    )


def build_message(
    *,
    sender: tuple[str, str],
    recipient: tuple[str, str],
    subject: str,
    text: str,
    html: str | None,
    msg_id: str,
    date: datetime,
    extra_headers: Mapping[str, str] | None = None,
    attachments: Sequence[AttachedFile] = (),
) -> str:
    """A complete RFC 5322 message with CRLF line ends; bodies base64 so it is pure ASCII.
    Attachments are named by ledger markers: `Store.assembled` puts their content in."""
    headers = [
        f"From: {_address('From', *sender)}",
        f"To: {_address('To', *recipient)}",
        f"Subject: {_subject(subject)}",
        f"Date: {_date_header(date)}",
        f"Message-ID: {check_header('Message-ID', msg_id)}",
        "MIME-Version: 1.0",
    ]
    for name, value in (extra_headers or {}).items():
        headers.append(f"{check_header('header name', name)}: {_encode(name, value)}")
    text_part = f'Content-Type: text/plain; charset="utf-8"{CRLF}Content-Transfer-Encoding: base64'
    if html is None:
        body = CRLF.join([text_part, "", _body(text)])
    else:
        boundary = "=_" + hashlib.sha256(msg_id.encode()).hexdigest()[:24]
        html_part = (
            f'Content-Type: text/html; charset="utf-8"{CRLF}Content-Transfer-Encoding: base64'
        )
        body = CRLF.join(
            [
                f'Content-Type: multipart/alternative; boundary="{boundary}"',
                "",
                f"--{boundary}",
                text_part,
                "",
                _body(text),
                f"--{boundary}",
                html_part,
                "",
                _body(html),
                f"--{boundary}--",
                "",
            ]
        )
    if not attachments:
        return CRLF.join([*headers, body])
    mixed = "=_m" + hashlib.sha256(msg_id.encode()).hexdigest()[:24]
    parts = [f"--{mixed}{CRLF}{body}"]
    parts += [f"--{mixed}{CRLF}{attachment_part(a)}" for a in attachments]
    return CRLF.join(
        [
            *headers,
            f'Content-Type: multipart/mixed; boundary="{mixed}"',
            "",
            CRLF.join(parts),
            f"--{mixed}--",
            "",
        ]
    )


def message_parts(raw: str) -> tuple[str, str, str | None]:
    """Subject, text body and HTML body (if any) of a MIME message from the ledger."""
    msg = message_from_string(raw, policy=default_policy)
    assert isinstance(msg, EmailMessage)
    text, body_html = "", None
    for part in msg.walk():
        if part.get_content_maintype() != "text" or part.is_attachment():
            continue
        if part.get_content_type() == "text/plain" and not text:
            text = str(part.get_content())
        elif part.get_content_type() == "text/html" and body_html is None:
            body_html = str(part.get_content())
    return str(msg["Subject"] or ""), text, body_html


def file_size(size: int) -> str:
    """A size as people read it: 812 B, 35.2 KB, 2.0 MB (1,000-based, as mail limits are)."""
    if size < 1000:
        return f"{size} B"
    if size < 1000 * 1000:
        return f"{size / 1000:.1f} KB"
    return f"{size / 1000 / 1000:.1f} MB"


def attachments_of(raw: str) -> list[AttachedFile]:
    """The attachments a stored message names (name, type, digest), in order."""
    if MARK not in raw:
        return []
    msg = message_from_string(raw, policy=default_policy)
    assert isinstance(msg, EmailMessage)
    found: list[AttachedFile] = []
    for part in msg.iter_attachments():
        digest = str(part.get_payload()).strip().removeprefix(MARK)
        found.append(AttachedFile(part.get_filename() or "", part.get_content_type(), digest))
    return found

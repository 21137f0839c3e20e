"""Build the MIME message stored in the ledger and sent as is.

Hand-assembled rather than built with `email.message.EmailMessage`: with 100,000 recipients
the stdlib builder costs more than rendering and the insert together (see BENCHMARKS.md).
Encoding of header words and addresses still uses the stdlib (`email.header`, `email.utils`);
tests parse every message back with the stdlib parser.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime
from email.utils import format_datetime, formataddr
from functools import lru_cache

from notifier.errors import HeaderError

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


def _encode(name: str, value: str) -> str:
    check_header(name, value)
    # ASCII stays as is (URLs in List-Unsubscribe must not be encoded; SMTP allows 998).
    return value if value.isascii() else encode_words(value)


@lru_cache(maxsize=4096)
def _display_name(display: str) -> str:
    if display.isascii():
        return formataddr((display, "x@y")).rpartition(" <")[0] if display else ""
    return encode_words(display)


def _address(name: str, display: str, address: str) -> str:
    check_header(name, display)
    check_header(name, address)
    if not display:
        return address
    return f"{_display_name(display)} <{address}>"


@lru_cache(maxsize=256)
def _date_header(date: datetime) -> str:
    # The same send time repeats for a whole audience.
    return format_datetime(date)


def _body(text: str) -> str:
    return base64.encodebytes(text.encode("utf-8")).decode("ascii").replace("\n", CRLF)


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
) -> str:
    """A complete RFC 5322 message with CRLF line ends; bodies base64 so it is pure ASCII."""
    headers = [
        f"From: {_address('From', *sender)}",
        f"To: {_address('To', *recipient)}",
        f"Subject: {_encode('Subject', subject)}",
        f"Date: {_date_header(date)}",
        f"Message-ID: {check_header('Message-ID', msg_id)}",
        "MIME-Version: 1.0",
    ]
    for name, value in (extra_headers or {}).items():
        headers.append(f"{check_header('header name', name)}: {_encode(name, value)}")
    text_part = f'Content-Type: text/plain; charset="utf-8"{CRLF}Content-Transfer-Encoding: base64'
    if html is None:
        return CRLF.join([*headers, text_part, "", _body(text)])
    boundary = "=_" + hashlib.sha256(msg_id.encode()).hexdigest()[:24]
    html_part = f'Content-Type: text/html; charset="utf-8"{CRLF}Content-Transfer-Encoding: base64'
    return CRLF.join(
        [
            *headers,
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

"""Messages are proper MIME, parse back with the stdlib, and refuse header injection."""

from __future__ import annotations

from datetime import datetime
from email import message_from_string
from email.policy import default
from zoneinfo import ZoneInfo

import pytest

from notifier.compose.message import build_message, message_id
from notifier.errors import HeaderError

WHEN = datetime(2026, 4, 3, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def build(**overrides: object) -> str:
    values: dict[str, object] = {
        "sender": ("市外办法治处", "notifier@fao.example.com"),
        "recipient": ("法治处", "fazhi@fao.example.com"),
        "subject": "【提醒】全民国家安全教育日（2026年4月15日）还有12天，请提前做好宣传准备工作",
        "text": "各位同事：\n请做好准备。\n",
        "html": "<p>各位同事：请做好准备。</p>",
        "msg_id": message_id(
            "security-day/2026-04-15/before-10d/fazhi@fao.example.com/email", "fao.example.com"
        ),
        "date": WHEN,
        "extra_headers": {"Auto-Submitted": "auto-generated"},
    }
    values.update(overrides)
    return build_message(**values)  # type: ignore[arg-type]


def test_a_message_with_html_is_multipart_alternative_in_utf8() -> None:
    raw = build()
    assert raw.isascii()
    msg = message_from_string(raw, policy=default)
    assert msg.get_content_type() == "multipart/alternative"
    assert str(msg["Subject"]).startswith("【提醒】全民国家安全教育日")
    assert str(msg["From"]) == "市外办法治处 <notifier@fao.example.com>"
    assert str(msg["To"]) == "法治处 <fazhi@fao.example.com>"
    assert msg["Date"].datetime == WHEN
    assert msg["Auto-Submitted"] == "auto-generated"
    text, html = [p.get_content() for p in msg.iter_parts()]  # type: ignore[attr-defined]
    assert text.replace("\r\n", "\n") == "各位同事：\n请做好准备。\n"
    assert "<p>各位同事" in html


def test_a_message_without_html_is_a_single_text_part() -> None:
    msg = message_from_string(build(html=None), policy=default)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"


def test_the_message_id_is_derived_from_the_delivery_key() -> None:
    a = message_id("k/1", "example.com")
    assert a == message_id("k/1", "example.com")
    assert a != message_id("k/2", "example.com")
    assert a.startswith("<") and a.endswith("@example.com>")


@pytest.mark.parametrize(
    "field",
    [
        {"subject": "hello\r\nBcc: victim@example.com"},
        {"subject": "line\nbreak"},
        {"recipient": ("x\r\nBcc: y@example.com", "a@example.com")},
        {"recipient": ("x", "a@example.com\r\nBcc: y@example.com")},
        {"sender": ("org\n", "n@example.com")},
        {"extra_headers": {"X-Test": "a\r\nb"}},
    ],
)
def test_header_values_with_line_breaks_are_rejected(field: dict[str, object]) -> None:
    with pytest.raises(HeaderError):
        build(**field)


@pytest.mark.parametrize(
    "text",
    ["短", "全民国家安全教育日" * 9, "Mixed 中文 and ASCII " * 6, "emoji 🎉 在内" * 5, "é" * 80],
)
def test_encoded_words_round_trip_and_stay_within_75_characters(text: str) -> None:
    from email.header import decode_header, make_header

    from notifier.compose.message import encode_words

    encoded = encode_words(text)
    assert all(len(word) <= 75 for word in encoded.split("\r\n "))
    assert str(make_header(decode_header(encoded))) == text


def test_long_ascii_headers_are_not_encoded() -> None:
    url = "<https://notifier.example.com/unsubscribe?token=" + "a" * 90 + ">"
    msg = message_from_string(build(extra_headers={"List-Unsubscribe": url}), policy=default)
    assert msg["List-Unsubscribe"] == url


# --- RFC 5322's 998 characters a line ---------------------------------------------------------


def lines_of(raw: str) -> list[str]:
    head = raw.split("\r\n\r\n", 1)[0]
    return head.split("\r\n")


def test_a_long_ascii_subject_is_folded_at_spaces_and_reads_back_whole() -> None:
    subject = " ".join(f"word{i}" for i in range(300))  # about 2,400 characters
    raw = build(subject=subject)
    assert max(map(len, lines_of(raw))) <= 998
    assert sum(1 for line in lines_of(raw) if line.startswith(" ")) > 1  # folded
    assert message_from_string(raw, policy=default)["Subject"] == subject


def test_a_long_subject_without_spaces_is_encoded_not_cut() -> None:
    subject = "x" * 1500
    raw = build(subject=subject)
    assert max(map(len, lines_of(raw))) <= 998
    assert str(message_from_string(raw, policy=default)["Subject"]) == subject


def test_a_long_chinese_subject_stays_within_the_limit() -> None:
    subject = "全民国家安全教育日" * 200
    raw = build(subject=subject)
    assert max(map(len, lines_of(raw))) <= 998
    assert str(message_from_string(raw, policy=default)["Subject"]) == subject


def test_a_header_that_cannot_be_folded_is_refused_naming_it() -> None:
    url = "<https://notifier.example.com/unsubscribe?token=" + "a" * 1000 + ">"
    with pytest.raises(HeaderError, match=r"List-Unsubscribe: 10\d\d characters .* 998"):
        build(extra_headers={"List-Unsubscribe": url})


def test_a_long_ascii_display_name_is_folded() -> None:
    name = " ".join(["Department of Foreign Affairs"] * 40)
    raw = build(recipient=(name, "fazhi@fao.example.com"))
    assert max(map(len, lines_of(raw))) <= 998
    to = message_from_string(raw, policy=default)["To"]
    assert to.addresses[0].addr_spec == "fazhi@fao.example.com"
    assert to.addresses[0].display_name == name


def test_a_header_at_the_limit_is_left_alone() -> None:
    value = "a" * (998 - len("X-Long: "))
    raw = build(extra_headers={"X-Long": value})
    assert f"X-Long: {value}" in lines_of(raw)


def test_a_display_name_too_long_to_fold_is_encoded() -> None:
    name = "Z" * 1200
    raw = build(recipient=(name, "fazhi@fao.example.com"))
    assert max(map(len, lines_of(raw))) <= 998
    to = message_from_string(raw, policy=default)["To"]
    # The stdlib's address parser keeps a space between adjacent encoded words (RFC 2047
    # 6.2 says to drop it, as mail clients do); the characters all come back.
    assert to.addresses[0].display_name.replace(" ", "") == name
    assert to.addresses[0].addr_spec == "fazhi@fao.example.com"

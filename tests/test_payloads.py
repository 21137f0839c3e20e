"""The platforms' message forms: pure functions, no server."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.channels.http import masked_url, pacer
from notifier.channels.payloads import (
    ELLIPSIS,
    WECOM_MARKDOWN_BYTES,
    ChatMessage,
    cut,
    payload,
    size,
)
from notifier.schedules import ChannelSpec, Mention

NO_MENTION = Mention()


def spec(kind: str, mention: Mention = NO_MENTION) -> ChannelSpec:
    return ChannelSpec("g", kind, "URL", None, mention, None, None, None, None, Path("x.yaml"))  # type: ignore[arg-type]


def message(text: str) -> ChatMessage:
    return ChatMessage(
        "k", "主题", text, "e", "标题", "2026-04-15", "2026-04-15", "2026-04-15", "r", "当天"
    )


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=400), limit=st.integers(min_value=4, max_value=300))
def test_cut_keeps_whole_characters_and_fits(text: str, limit: int) -> None:
    out = cut(text, lambda t: size(t) <= limit)
    assert size(out) <= limit
    assert out == text or (out.endswith(ELLIPSIS) and text.startswith(out[: -len(ELLIPSIS)]))


def test_wecom_markdown_with_four_byte_characters_is_cut_below_4096_bytes() -> None:
    body = json.loads(payload(spec("wecom"), message("𠀀" * 2000)))
    content = body["markdown"]["content"]
    assert size(content) <= WECOM_MARKDOWN_BYTES and content.endswith(ELLIPSIS)
    assert set(content[:-1]) == {"𠀀"}


def test_wecom_mentions_by_mobile_use_the_text_form() -> None:
    body = json.loads(
        payload(spec("wecom", Mention(mobiles=("13800000000",), all=True)), message("hi"))
    )
    assert body == {
        "msgtype": "text",
        "text": {"content": "hi", "mentioned_mobile_list": ["13800000000", "@all"]},
    }


def test_dingtalk_names_the_mentioned_mobiles_in_the_text() -> None:
    body = json.loads(payload(spec("dingtalk", Mention(mobiles=("13800000000",))), message("提醒")))
    assert body["markdown"]["text"] == "提醒\n\n@13800000000"
    assert body["at"] == {"atMobiles": ["13800000000"], "atUserIds": [], "isAtAll": False}


def test_a_masked_url_shows_the_host_only() -> None:
    assert masked_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc") == (
        "https://qyapi.weixin.qq.com/…"
    )


def test_the_pace_spaces_sends_evenly_with_a_margin() -> None:
    wecom = pacer(20, None)
    feishu = pacer(100, 5)
    assert wecom is not None and feishu is not None
    assert 3.0 < wecom.time_period < 3.1 and wecom.max_rate == 1
    assert 0.6 < feishu.time_period < 0.62
    assert pacer(0, None) is None

"""The platforms' message forms: pure functions, no server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.channels.http import pacer
from notifier.channels.payloads import (
    ELLIPSIS,
    FEISHU_BODY_BYTES,
    FEISHU_SIGN_RESERVE,
    WECOM_MARKDOWN_BYTES,
    ChatMessage,
    chat_text,
    cut,
    payload,
    size,
)
from notifier.channels.status import masked_url
from notifier.schedule.model import ChannelSpec, Mention
from tests.robots import feishu_problem

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


# --- Feishu `post` (rich text), `form: post` ---

REMINDER_MD = (
    "### 【工作提醒】全民国家安全教育日\n"
    "今天是全民国家安全教育日，请按计划抓好**落实**。\n"
    "\n\n"
    "> 时间：2026年4月15日（星期三）\n"
    "> 方案见 [通知](https://fao.example.gov.cn/n/1?a=1)，报名 https://reg.example.com/x，谢谢\n"
    "- 推送 `主题宣传`\n"
)


def post_spec(mention: Mention = NO_MENTION) -> ChannelSpec:
    return dataclasses.replace(spec("feishu", mention), form="post")


def test_a_feishu_post_takes_the_heading_as_title_and_each_line_as_a_paragraph() -> None:
    body = json.loads(payload(post_spec(), message(REMINDER_MD)))
    assert body["msg_type"] == "post"
    zh = body["content"]["post"]["zh_cn"]
    assert zh["title"] == "【工作提醒】全民国家安全教育日"
    assert zh["content"] == [
        [{"tag": "text", "text": "今天是全民国家安全教育日，请按计划抓好落实。"}],
        [{"tag": "text", "text": ""}],  # the blank lines between blocks: one empty paragraph
        [{"tag": "text", "text": "时间：2026年4月15日（星期三）"}],
        [
            {"tag": "text", "text": "方案见 "},
            {"tag": "a", "text": "通知", "href": "https://fao.example.gov.cn/n/1?a=1"},
            {"tag": "text", "text": "，报名 "},
            {"tag": "a", "text": "https://reg.example.com/x", "href": "https://reg.example.com/x"},
            {"tag": "text", "text": "，谢谢"},
        ],
        [{"tag": "text", "text": "• 推送 主题宣传"}],
    ]


def test_a_feishu_post_of_a_template_without_chat_md_takes_the_bold_subject_as_title() -> None:
    zh = json.loads(
        payload(
            post_spec(), message(chat_text("【提醒】国家宪法日", "各位同事：\n今天是国家宪法日。"))
        )
    )
    zh = zh["content"]["post"]["zh_cn"]
    assert zh["title"] == "【提醒】国家宪法日"
    assert zh["content"] == [
        [{"tag": "text", "text": "各位同事："}],
        [{"tag": "text", "text": "今天是国家宪法日。"}],
    ]
    plain = json.loads(payload(post_spec(), message("没有标题的一行")))["content"]["post"]
    assert plain["zh_cn"]["title"] == "主题"  # no heading: the subject


def test_feishu_post_mentions_are_at_tags_with_all_as_user_id_all() -> None:
    mention = Mention(userids=("ou_7d8a6e6df7621556ce0d21922b676706",), all=True)
    zh = json.loads(payload(post_spec(mention), message("提醒")))["content"]["post"]["zh_cn"]
    assert zh["content"][-1] == [
        {"tag": "at", "user_id": "ou_7d8a6e6df7621556ce0d21922b676706"},
        {"tag": "at", "user_id": "all"},
    ]


def test_an_oversize_feishu_post_is_cut_on_a_character_with_an_ellipsis_below_20_kb() -> None:
    mention = Mention(userids=("ou_1",), all=True)
    text = "### 标题\n" + ("𠀀法治宣传" * 40 + "\n") * 60
    raw = payload(post_spec(mention), message(text))
    assert 19_000 < size(raw) <= FEISHU_BODY_BYTES - FEISHU_SIGN_RESERVE
    zh = json.loads(raw)["content"]["post"]["zh_cn"]
    last_line = zh["content"][-2][-1]["text"]  # the line before the mentions
    assert last_line.endswith(ELLIPSIS) and "\ufffd" not in last_line
    assert zh["content"][-1] == [{"tag": "at", "user_id": "ou_1"}, {"tag": "at", "user_id": "all"}]


def test_the_card_stays_the_default_feishu_form() -> None:
    assert json.loads(payload(spec("feishu"), message("提醒")))["msg_type"] == "interactive"


# Pieces of chat Markdown, links and marks among them, in any order.
MARKDOWN_PIECES = [*"法治 *#>-`[]()\n:/.，…𠀀", "https://", "**", "### ", "](https://a.cn/x)"]


@settings(max_examples=80, deadline=None)
@given(text=st.lists(st.sampled_from(MARKDOWN_PIECES), max_size=60).map("".join))
def test_any_chat_markdown_gives_a_post_the_feishu_stand_in_accepts(text: str) -> None:
    body = json.loads(payload(post_spec(Mention(userids=("ou_1",))), message(text)))
    assert feishu_problem(body) is None


def test_an_outbound_webhook_tells_a_notice_from_a_reminder_by_its_type() -> None:
    reminder = json.loads(payload(spec("webhook"), message("提醒")))
    notice = json.loads(
        payload(spec("webhook"), dataclasses.replace(message("汇总"), kind="notice"))
    )
    assert (reminder["type"], notice["type"]) == ("notifier.reminder", "notifier.notice")

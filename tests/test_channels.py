"""Chat robots and outbound webhooks against the local stand-in (tests/robots.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from notifier.channels.base import TransportError
from notifier.channels.payloads import ELLIPSIS
from notifier.errors import ConfigError
from notifier.ledger.models import State
from notifier.schedule.planner import planned_json
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import SCHEDULE, MakeSettings, write_schedule
from tests.robots import Platforms

DING_SECRET = "SEC0123456789abcdef0123456789abcdef"
FEISHU_SECRET = "feishu-secret-0123456789"
WEBHOOK_SECRET = "whsec_b3V0Ym91bmQtd2ViaG9vay10ZXN0LWtleS0wMTIzNDU="
WECOM_KEY = "wecom-key-693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DING_TOKEN = "dingtoken0123456789abcdef"
FEISHU_TOKEN = "feishu-token-2a2b3c4d5e6f7a8b"

# The staff audience of tests/conftest.py plus one chat group per platform.
CHAT_SCHEDULE = (
    SCHEDULE.replace("audiences:\n", "audiences:\n  group: {chat: CHANNEL}\n").replace(
        'date: "4·15"\n', 'date: "4·15"\n    audience: [staff, group]\n'
    )
    + """\
channels:
  CHANNEL:
    type: TYPE
    url_env: NOTIFIER_TEST_URL
    secret_env: NOTIFIER_TEST_SECRET
    per_minute: 0
    timeout: 2
    penalty: 0.3
"""
)


@pytest.fixture
async def platforms() -> AsyncIterator[Platforms]:
    server = await Platforms().start()
    yield server
    await server.stop()


def use_channel(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    kind: str,
    *,
    secret: str | None = "default",
    extra: str = "",
) -> str:
    """Point the schedule's chat group at the stand-in; returns the robot's name there."""
    name, path, default_secret = {
        "wecom": (WECOM_KEY, f"/cgi-bin/webhook/send?key={WECOM_KEY}", None),
        "dingtalk": (DING_TOKEN, f"/robot/send?access_token={DING_TOKEN}", DING_SECRET),
        "feishu": (FEISHU_TOKEN, f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}", FEISHU_SECRET),
        "webhook": ("oa", "/hooks/oa", WEBHOOK_SECRET),
    }[kind]
    text = CHAT_SCHEDULE.replace("CHANNEL", f"{kind}-group").replace("TYPE", kind) + extra
    if kind == "wecom":
        text = text.replace("    secret_env: NOTIFIER_TEST_SECRET\n", "")
    write_schedule(tmp_path / "schedules", text)
    monkeypatch.setenv("NOTIFIER_TEST_URL", platforms.url(path))
    chosen = default_secret if secret == "default" else secret
    if chosen is not None:
        monkeypatch.setenv("NOTIFIER_TEST_SECRET", chosen)
    return name


async def deliver(app: App) -> None:
    """Deliver until no row is pending (retries come due within the test's short backoff)."""
    for _ in range(40):
        await asyncio.wait_for(app.run_until_idle(), 10)
        if not await app.store.list_deliveries(state=State.PENDING):
            return
        await asyncio.sleep(0.1)


async def send_again(app: App, times: int) -> None:
    """`times` more sends of the same reminder, due now (keys differ by the millisecond)."""
    for _ in range(times):
        await asyncio.sleep(0.002)
        await app.outbox.send_now(
            "security-day", reminder_id="on-start", now=app.clock(), again=True
        )


async def chat_rows(app: App) -> list:  # type: ignore[type-arg]
    return [r for r in await app.store.list_deliveries() if r.channel != "email"]


@pytest.mark.parametrize("kind", ["wecom", "dingtalk", "feishu", "webhook"])
async def test_a_reminder_reaches_the_staff_by_email_and_the_group_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
    kind: str,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, kind)
    platforms.add(name, secret={"wecom": None}.get(kind, "x"))
    robot = platforms.robots[name]
    robot.secret = {
        "dingtalk": DING_SECRET,
        "feishu": FEISHU_SECRET,
        "webhook": WEBHOOK_SECRET,
    }.get(kind)
    async with App(make_settings()) as app:
        created, _ = await app.outbox.send_now(
            "security-day", reminder_id="on-start", now=app.clock()
        )
        await deliver(app)
        again, _ = await app.outbox.send_now(
            "security-day", reminder_id="on-start", now=app.clock()
        )
        await deliver(app)
        rows = await app.store.list_deliveries()
    assert created == 3 and again == 0
    assert sorted((r.channel, r.state) for r in rows) == sorted(
        [("email", State.SENT), ("email", State.SENT), (f"{kind}-group", State.SENT)]
    )
    assert len(robot.received) == 1
    body = robot.received[0]
    text = json.dumps(body, ensure_ascii=False)
    assert "全民国家安全教育日" in text
    if kind == "wecom":
        assert body["msgtype"] == "markdown"
    elif kind == "dingtalk":
        assert body["markdown"]["title"].startswith("【提醒】全民国家安全教育日")
    elif kind == "feishu":
        assert body["msg_type"] == "interactive" and "sign" in body
    else:
        chat = next(r for r in rows if r.channel != "email")
        assert robot.headers[0]["webhook-id"] == chat.key
        assert body["event"]["id"] == "security-day" and body["reminder"]["id"] == "on-start"


async def test_chat_md_is_the_group_message_when_the_template_has_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "wecom")
    robot = platforms.add(name)
    (tmp_path / "templates" / "reminder" / "chat.md").write_text(
        "### {{ event.title }}\n> {{ reminder.label }}，致{{ recipient.name }}\n", encoding="utf-8"
    )
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
    assert robot.received[0]["markdown"]["content"] == "### 全民国家安全教育日\n> 当天，致各位同事"


@pytest.mark.parametrize(
    ("kind", "answer", "code"),
    [
        ("wecom", {"errcode": 93000, "errmsg": "invalid webhook url, from ip: 10.1.2.3"}, "93000"),
        ("dingtalk", {"errcode": 300005, "errmsg": "token is not exist"}, "300005"),
        ("dingtalk", {"errcode": 310000, "errmsg": "keywords not in content"}, "310000"),
        ("feishu", {"code": 19022, "msg": "ip not allowed"}, "19022"),
        ("feishu", {"code": 19024, "msg": "Key Words Not Found"}, "19024"),
        ("feishu", {"code": 9499, "msg": "Bad Request"}, "9499"),
    ],
)
async def test_a_configuration_error_fails_at_once_with_the_platforms_code_and_shows_in_readyz(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
    kind: str,
    answer: dict[str, object],
    code: str,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, kind)
    secret = {"dingtalk": DING_SECRET, "feishu": FEISHU_SECRET}.get(kind)
    # Twice: a 310000 is re-signed and tried once more before it counts.
    robot = platforms.add(name, secret=secret, script=[(200, answer), (200, answer)])
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
        (row,) = await chat_rows(app)
        async with TestClient(TestServer(create_web_app(app))) as client:
            # The platform's code is detail: the admin token's (issue 17).
            ready = await client.get(
                "/readyz", headers={"Authorization": "Bearer admin-token-for-tests"}
            )
            reasons = (await ready.json())["reasons"]
    assert row.state is State.FAILED and row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith(code)
    assert "10.1.2.3" not in row.last_error
    assert robot.requests == (2 if code == "310000" else 1)
    assert ready.status == 503 and any(f"{kind}-group" in r and code in r for r in reasons)


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        ("wecom", (200, {"errcode": -1, "errmsg": "system busy"})),
        ("dingtalk", (200, {"errcode": -1, "errmsg": "system busy"})),
        ("feishu", (503, {"msg": "unavailable"})),
        ("webhook", (502, {"error": "bad gateway"})),
        ("wecom", (200, "not json")),
    ],
)
async def test_busy_and_5xx_answers_are_retried_with_the_same_bytes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
    kind: str,
    answer: tuple[int, object],
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, kind)
    secret = {"dingtalk": DING_SECRET, "feishu": FEISHU_SECRET, "webhook": WEBHOOK_SECRET}
    robot = platforms.add(name, secret=secret.get(kind), script=[answer])
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
        (row,) = await chat_rows(app)
    assert row.state is State.SENT and row.attempts == 2
    assert len(robot.received) == 1 and robot.requests == 2
    if kind == "feishu":  # signed inside the body: the stored fields follow the signature
        assert all(b.endswith(row.message[1:].encode()) for b in robot.bodies)
    else:
        assert robot.bodies[0] == robot.bodies[1] == row.message.encode()


async def test_a_network_error_is_retried_and_the_row_stays_pending(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    use_channel(tmp_path, monkeypatch, platforms, "wecom")
    monkeypatch.setenv(
        "NOTIFIER_TEST_URL", "http://127.0.0.1:9/cgi-bin/webhook/send?key=SECRETKEY1"
    )
    frozen = float(int(time.time()))  # the retry is never due in this burst, however short
    async with App(make_settings(), clock=lambda: frozen) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        stats = await app.chat_worker.run_until_idle()
        (row,) = await chat_rows(app)
    assert stats.retried == 1 and row.state is State.PENDING
    assert row.last_error is not None and row.last_error.startswith("network:")
    assert "SECRETKEY1" not in row.last_error


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        ("wecom", {"errcode": 45009, "errmsg": "api freq out of limit"}),
        ("feishu", {"code": 11232, "msg": "frequency limited"}),
    ],
)
async def test_a_throttled_send_waits_out_the_penalty_then_succeeds(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
    kind: str,
    answer: dict[str, object],
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, kind)
    robot = platforms.add(name, secret=FEISHU_SECRET if kind == "feishu" else None)
    robot.script = [(200, answer)]
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        first = await app.chat_worker.run_until_idle()
        (row,) = await chat_rows(app)
        assert first.retried == 1 and row.state is State.PENDING
        assert row.due_at >= app.clock() + 0.2  # the 0.3 s penalty, not an instant retry
        assert row.last_error is not None and row.last_error.startswith("throttled:")
        await asyncio.sleep(0.35)
        await deliver(app)
        (row,) = await chat_rows(app)
    assert row.state is State.SENT and len(robot.received) == 1


async def test_dingtalk_over_its_minute_limit_is_throttled_then_every_message_arrives(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "dingtalk")
    # Two a "minute" of 0.3 s, then a 0.3 s penalty: the third of three is throttled.
    robot = platforms.add(name, secret=DING_SECRET, per_minute=2, window=0.3, penalty=0.3)
    async with App(make_settings()) as app:
        await send_again(app, 3)
        await app.chat_worker.run_until_idle()
        assert robot.throttled >= 1
        for _ in range(8):
            await asyncio.sleep(0.35)
            await deliver(app)
            rows = await chat_rows(app)
            if all(r.state is State.SENT for r in rows):
                break
    assert [r.state for r in rows] == [State.SENT] * 3
    assert len(robot.received) == 3


@pytest.mark.parametrize("kind", ["wecom", "dingtalk", "feishu", "feishu-post"])
async def test_an_oversize_message_is_cut_with_an_ellipsis_not_rejected(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
    kind: str,
) -> None:
    form = "    form: post\n" if kind == "feishu-post" else ""
    kind = kind.removesuffix("-post")
    name = use_channel(tmp_path, monkeypatch, platforms, kind, extra=form)
    robot = platforms.add(name, secret={"dingtalk": DING_SECRET, "feishu": FEISHU_SECRET}.get(kind))
    (tmp_path / "templates" / "reminder" / "chat.md").write_text(
        "{{ event.title }}\n" + "法治宣传" * 2500 + "\n结尾", encoding="utf-8"
    )
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
        (row,) = await chat_rows(app)
    assert row.state is State.SENT, row.last_error
    body = robot.received[0]
    if form:  # no heading in chat.md: the subject is the title, the lines the paragraphs
        zh = body["content"]["post"]["zh_cn"]
        assert zh["title"].startswith("【提醒】全民国家安全教育日")
        text = "".join(e["text"] for p in zh["content"] for e in p)
    else:
        text = {
            "wecom": lambda: body["markdown"]["content"],
            "dingtalk": lambda: body["markdown"]["text"],
            "feishu": lambda: body["card"]["elements"][0]["content"],
        }[kind]()
    assert text.startswith("全民国家安全教育日") and text.endswith(ELLIPSIS)
    if kind == "wecom":
        assert 4000 < len(text.encode()) <= 4096
    if kind == "feishu":
        assert 19_000 < len(robot.bodies[0]) <= 20 * 1024


async def test_a_feishu_post_channel_sends_rich_text_with_links_and_mentions_signed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    mention = '    mention: {userids: ["ou_5ad573a6411d72b8305fda3a9c15c70e"], all: true}\n'
    name = use_channel(
        tmp_path, monkeypatch, platforms, "feishu", extra="    form: post\n" + mention
    )
    # Busy once: the retry must post the stored post again, freshly signed.
    robot = platforms.add(name, secret=FEISHU_SECRET, script=[(503, {"msg": "unavailable"})])
    (tmp_path / "templates" / "reminder" / "chat.md").write_text(
        "### {{ event.title }}\n{{ reminder.label }}，详见 [通知](https://fao.example.gov.cn/n/1)\n",
        encoding="utf-8",
    )
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
        (row,) = await chat_rows(app)
    assert row.state is State.SENT and row.attempts == 2, row.last_error
    assert robot.refused == [] and len(robot.received) == 1
    body = robot.received[0]
    assert body["msg_type"] == "post" and "sign" in body and "timestamp" in body
    assert body["content"]["post"]["zh_cn"] == {
        "title": "全民国家安全教育日",
        "content": [
            [
                {"tag": "text", "text": "当天，详见 "},
                {"tag": "a", "text": "通知", "href": "https://fao.example.gov.cn/n/1"},
            ],
            [
                {"tag": "at", "user_id": "ou_5ad573a6411d72b8305fda3a9c15c70e"},
                {"tag": "at", "user_id": "all"},
            ],
        ],
    }
    assert json.loads(row.message)["content"] == body["content"]  # the ledger keeps the post
    assert all(b.endswith(row.message[1:].encode()) for b in robot.bodies)  # same bytes


@pytest.mark.parametrize(
    ("post", "where"),
    [
        ({"zh_cn": {"title": "t", "content": [[{"tag": "b", "text": "x"}]]}}, "tag"),
        ({"zh_cn": {"title": "t", "content": [[{"tag": "a", "text": "x"}]]}}, "href"),
        ({"zh_cn": {"title": "t", "content": [[{"tag": "at"}]]}}, "user_id"),
        ({"zh_cn": {"title": "t", "content": [{"tag": "text", "text": "x"}]}}, "content"),
        ({"zh": {"title": "t", "content": []}}, "content.post"),
    ],
)
async def test_the_feishu_stand_in_refuses_a_post_feishu_would_not_take(
    platforms: Platforms, post: dict[str, object], where: str
) -> None:
    robot = platforms.add(FEISHU_TOKEN)
    url = platforms.url(f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}")
    good = {"zh_cn": {"title": "t", "content": [[{"tag": "at", "user_id": "all"}]]}}
    async with aiohttp.ClientSession() as session:
        answers = []
        for body in (post, good):
            data = {"msg_type": "post", "content": {"post": body}}
            async with session.post(url, json=data) as response:
                answers.append((await response.json())["code"])
    assert answers == [9499, 0]
    assert len(robot.refused) == 1 and robot.refused[0].endswith(where)


@pytest.mark.parametrize("kind", ["dingtalk", "feishu"])
async def test_a_wrong_secret_fails_after_one_fresh_signature(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
    kind: str,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, kind, secret="SECwrong-secret-000000")
    robot = platforms.add(name, secret=DING_SECRET if kind == "dingtalk" else FEISHU_SECRET)
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
        (row,) = await chat_rows(app)
        problems = app.channels.problems()
    assert row.state is State.FAILED and robot.requests == 2 and not robot.received
    assert row.last_error is not None
    assert row.last_error.startswith("310000" if kind == "dingtalk" else "19021")
    assert "SECwrong" not in row.last_error and len(problems) == 1


async def test_a_timestamp_rejection_is_signed_again_and_sent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "feishu")
    robot = platforms.add(name, secret=FEISHU_SECRET)
    robot.script = [(200, {"code": 19021, "msg": "timestamp is not within one hour"})]
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
        (row,) = await chat_rows(app)
        problems = app.channels.problems()
    assert row.state is State.SENT and row.attempts == 1 and robot.requests == 2
    assert problems == []


async def test_a_configuration_error_clears_when_the_channel_answers_again(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "wecom")
    robot = platforms.add(name, script=[(200, {"errcode": 93000, "errmsg": "invalid webhook url"})])
    settings = make_settings()
    async with App(settings) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
        assert len(app.channels.problems()) == 1
    async with App(settings) as app:  # the status outlives a restart (meta table)
        assert len(app.channels.problems()) == 1
        await app.outbox.send_now(
            "security-day", reminder_id="on-start", now=app.clock(), again=True
        )
        await deliver(app)
        assert app.channels.problems() == []
    assert len(robot.received) == 1


async def test_a_410_from_an_outbound_webhook_disables_the_channel(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "webhook")
    robot = platforms.add(name, secret=WEBHOOK_SECRET, gone=True)
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
        robot.gone = False
        await app.outbox.send_now(
            "security-day", reminder_id="on-start", now=app.clock(), again=True
        )
        await deliver(app)
        rows = await chat_rows(app)
        async with TestClient(TestServer(create_web_app(app))) as client:
            # The platform's code is detail: the admin token's (issue 17).
            ready = await client.get(
                "/readyz", headers={"Authorization": "Bearer admin-token-for-tests"}
            )
            reasons = (await ready.json())["reasons"]
    assert [r.state for r in rows] == [State.FAILED, State.FAILED]
    assert robot.requests == 1  # the second row was not posted: the channel is disabled
    assert ready.status == 503 and any("disabled" in r and "410" in r for r in reasons)


async def test_robot_keys_and_secrets_never_reach_logs_or_the_ledger(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    name = use_channel(tmp_path, monkeypatch, platforms, "dingtalk", secret="SECnot-the-right-one")
    platforms.add(
        name,
        secret=DING_SECRET,
        script=[(200, {"errcode": 300005, "errmsg": f"token {DING_TOKEN} from ip: 10.9.8.7"})],
    )
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
        rows = await app.store.list_deliveries()
        described = app.channels.chats["dingtalk-group"].description
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    stored = "\n".join(f"{r.message} {r.last_error} {r.recipient} {r.key}" for r in rows)
    for secret in (DING_TOKEN, "SECnot-the-right-one", "10.9.8.7"):
        assert secret not in logged and secret not in stored and secret not in described
    assert any(getattr(r, "action", None) == "channel_problem" for r in caplog.records)
    assert any("300005" in (r.last_error or "") for r in rows)


async def test_a_chat_group_is_sent_once_across_a_restart(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
    db_url: str,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "wecom")
    robot = platforms.add(name)
    settings = make_settings(database_url=db_url)
    async with App(settings) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
    async with App(settings) as app:
        again, _ = await app.outbox.send_now(
            "security-day", reminder_id="on-start", now=app.clock()
        )
        await deliver(app)
        rows = await chat_rows(app)
    assert again == 0 and len(rows) == 1 and len(robot.received) == 1


async def test_a_paced_robot_does_not_hold_up_email(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "wecom")
    robot = platforms.add(name)
    text = (tmp_path / "schedules" / "main.yaml").read_text(encoding="utf-8")
    write_schedule(tmp_path / "schedules", text.replace("per_minute: 0", "per_minute: 1"))
    stop = asyncio.Event()
    async with App(make_settings()) as app:
        await send_again(app, 3)  # three chat rows: one a minute
        chat = asyncio.create_task(app.chat_worker.run(stop, drain_timeout=0.2))
        await asyncio.sleep(0.2)
        email = await asyncio.wait_for(app.worker.run_until_idle(), 3)
        stop.set()
        await chat
        rows = await app.store.list_deliveries()
    assert email.sent == 6
    assert len(robot.received) == 1  # the first went at once; the others wait their turn
    assert sorted(r.state for r in rows if r.channel != "email") == [
        State.PENDING,
        State.PENDING,
        State.SENT,
    ]


def test_a_referenced_channel_with_an_unset_variable_is_an_error_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_settings: MakeSettings
) -> None:
    text = CHAT_SCHEDULE.replace("CHANNEL", "fazhi-wecom").replace("TYPE", "wecom")
    write_schedule(tmp_path / "schedules", text)
    monkeypatch.delenv("NOTIFIER_TEST_URL", raising=False)
    from datetime import datetime

    from notifier.checks import load_config

    with pytest.raises(ConfigError) as err:
        load_config(make_settings(), now=datetime(2026, 4, 1).astimezone())
    assert any(
        "channels.fazhi-wecom" in line and "NOTIFIER_TEST_URL" in line for line in err.value.errors
    )
    # Unreferenced: a warning only, so an example channel cannot stop the service.
    write_schedule(
        tmp_path / "schedules", text.replace("audience: [staff, group]", "audience: staff")
    )
    _, _, warnings = load_config(make_settings(), now=datetime(2026, 4, 1).astimezone())
    assert any("fazhi-wecom" in w and "NOTIFIER_TEST_URL" in w for w in warnings)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("type: TYPE", "type: slack"), "channels.g.type: Input should be 'wecom'"),
        (("group: {chat: CHANNEL}", "group: {chat: CHANNEL, external: true}"), "audiences.group"),
        (("[staff, group]", "[staff, nobody]"), "unknown audience 'nobody'"),
        (("group: {chat: CHANNEL}", "group: {chat: other}"), "unknown channel 'other'"),
        (("  CHANNEL:\n", "  email:\n"), "channels.email: a channel id"),
        (("penalty: 0.3\n", "penalty: 0.3\n    form: post\n"), "channels.g: form is for feishu"),
        (("type: TYPE", "type: feishu\n    form: poster"), "channels.g.form: Input should be"),
    ],
)
def test_bad_channel_config_gives_an_error_naming_the_file_and_path(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    from notifier.schedule.load import load_schedule

    text = CHAT_SCHEDULE.replace(*change).replace("CHANNEL", "g").replace("TYPE", "wecom")
    path = write_schedule(tmp_path / "schedules", text)
    with pytest.raises(ConfigError) as err:
        load_schedule(tmp_path / "schedules")
    assert any(line.startswith(str(path)) and expected in line for line in err.value.errors), (
        err.value.errors
    )
    if "external" in change[1]:
        assert any("refused for a chat audience" in line for line in err.value.errors)


async def test_a_reload_brings_in_a_new_channel_and_keeps_the_ledger(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    async with App(make_settings()) as app:
        assert app.channels.chats == {}
        name = use_channel(tmp_path, monkeypatch, platforms, "wecom")
        robot = platforms.add(name)
        assert app.reload()
        assert list(app.channels.chats) == ["wecom-group"]
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await deliver(app)
    assert len(robot.received) == 1


async def test_a_reload_keeps_an_unchanged_channel_and_its_penalty(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "wecom")
    platforms.add(name, script=[(200, {"errcode": 45009, "errmsg": "api freq out of limit"})])
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await app.chat_worker.run_until_idle()
        before = app.channels.chats["wecom-group"]
        assert app.reload()
        assert app.channels.chats["wecom-group"] is before
        with pytest.raises(TransportError, match="penalty running"):
            (row,) = await chat_rows(app)
            await before.send(row)


async def test_rows_of_a_channel_no_longer_configured_are_retried_not_mailed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "wecom")
    robot = platforms.add(name)
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        write_schedule(tmp_path / "schedules", SCHEDULE)  # the channel is gone
        assert app.reload() and app.worker.kind is None
        stats = await app.run_until_idle()
        (row,) = await chat_rows(app)
    assert stats.sent == 2 and stats.retried == 1  # the two emails; the chat row waits
    assert row.state is State.PENDING and "not configured" in (row.last_error or "")
    assert not robot.received and len(list((tmp_path / "mail" / "new").iterdir())) == 2


@pytest.mark.parametrize(
    ("kind", "url", "secret", "expected"),
    [
        ("wecom", "ftp://robot.example/send?key=HIDDEN-KEY-123", None, "http(s) URL"),
        ("webhook", "http://127.0.0.1:9/hooks/oa", "whsec_!!HIDDEN!!", "whsec_ followed by base64"),
    ],
)
def test_a_bad_variable_value_is_an_error_that_names_the_variable_not_the_value(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_settings: MakeSettings,
    kind: str,
    url: str,
    secret: str | None,
    expected: str,
) -> None:
    from datetime import datetime

    from notifier.checks import load_config

    text = CHAT_SCHEDULE.replace("CHANNEL", "g").replace("TYPE", kind)
    if secret is None:
        text = text.replace("    secret_env: NOTIFIER_TEST_SECRET\n", "")
    write_schedule(tmp_path / "schedules", text)
    monkeypatch.setenv("NOTIFIER_TEST_URL", url)
    if secret:
        monkeypatch.setenv("NOTIFIER_TEST_SECRET", secret)
    with pytest.raises(ConfigError) as err:
        load_config(make_settings(), now=datetime(2026, 4, 1).astimezone())
    lines = err.value.errors
    assert any("channels.g" in line and expected in line for line in lines), lines
    assert not any("HIDDEN" in line for line in lines)


async def test_upcoming_names_every_audience_and_counts_the_group_as_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    use_channel(tmp_path, monkeypatch, platforms, "wecom")
    async with App(make_settings()) as app:
        since = datetime(2027, 4, 1, tzinfo=app.settings.tz)
        (first, *_) = app.upcoming(since, since + timedelta(days=30))
        row = planned_json(first, app.schedule)
    assert row["audience"] == "staff" and row["audiences"] == ["staff", "group"]
    assert row["recipients"] == 3  # two staff addresses and one chat group

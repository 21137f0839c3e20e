"""`notifier channels ...`: list the chat channels, post a test message, show saved problems.

Registered on the main group by cli.py; `preview --audience` and `check` call in here too.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import click

from notifier.channels.base import TransportError
from notifier.channels.payloads import ChatMessage, payload, posted_text
from notifier.channels.registry import STATUS_META, missing_variables
from notifier.channels.status import masked_url
from notifier.checks import load_config
from notifier.config import Settings, read_secret
from notifier.errors import ConfigError, NotifierError, StoreError
from notifier.ledger.db import connect
from notifier.ledger.models import Delivery, State
from notifier.ledger.store import Store
from notifier.schedule.model import Schedule

TEST_TEXT = "**notifier 测试消息 test message**\n\n这是一条测试消息，收到即表示机器人配置正确。\n"


def test_row(cid: str, body: str, now: float) -> Delivery:
    """A ledger-shaped row that is never stored: what `channels test` posts."""
    key = f"test/{cid}/{int(now * 1000)}"
    return Delivery(
        id=0, key=key, event_id="test", occurrence="", reminder_id="test", recipient=cid,
        channel=cid, state=State.SENDING, due_at=now, message_id=key, subject="测试 test",
        message=body, source="manual", external=False, attempts=1, lease_until=None,
        last_error=None, created_at=now, updated_at=now, sent_at=None,
    )  # fmt: skip


def chat_preview(channel_id: str, body: str) -> str:
    """The body as it will be posted (a signature, where the platform wants one, is added
    at send time), and its text as staff will read it."""
    data = json.loads(body)
    pretty = json.dumps(data, ensure_ascii=False, indent=2)
    return (
        f"渠道 channel: {channel_id}\n\n--- 消息 message ---\n{posted_text(data)}\n"
        f"--- JSON ---\n{pretty}"
    )


def ledger_exists(url: str) -> bool:
    """False for a SQLite file not made yet (opening it would create it)."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?")[0]).is_file()
    return True


async def saved_problems(settings: Settings, schedule: Schedule) -> list[str]:
    """Channels whose last answer (saved in the ledger) was a configuration error.

    Read-only: a SQLite ledger that does not exist yet has nothing to say.
    """
    url = settings.database_url
    if not ledger_exists(url):
        return []
    out = []
    try:
        async with connect(url) as db:
            store = Store(db)
            for cid in sorted(schedule.channels):
                raw = await store.get_meta(STATUS_META + cid)
                if raw:
                    data = json.loads(raw)
                    state = "disabled" if data.get("disabled") else "configuration error"
                    out.append(f"channel {cid}: last answer: {state}: {data.get('error')}")
    except (StoreError, ValueError):
        return out
    return out


@click.group()
def channels() -> None:
    """聊天渠道 Chat robots and outbound webhooks."""


@channels.command("list")
def list_channels() -> None:
    """列出渠道 The configured channels (URLs masked) and whether their variables are set."""
    from notifier.cli.common import fail_config, settings_or_exit

    settings = settings_or_exit()
    try:
        schedule, _, _ = load_config(settings, now=datetime.now(settings.tz))
    except ConfigError as exc:
        fail_config(exc)
        return
    for cid, spec in sorted(schedule.channels.items()):
        missing = missing_variables(spec)
        if spec.smtp is not None:
            host = read_secret(spec.smtp.host_env)
            shown = f"smtp://{host.get_secret_value()}:{spec.smtp.port}" if host else None
            where = shown or f"({spec.smtp.host_env} 未设置 unset)"
        else:
            url = read_secret(spec.url_env)
            where = masked_url(url.get_secret_value()) if url else f"({spec.url_env} 未设置 unset)"
        state = f"missing {', '.join(missing)}" if missing else "ok"
        click.echo(f"{cid}\t{spec.type}\t{where}\t{state}")


@channels.command("test")
@click.argument("channel_id")
def test_channel(channel_id: str) -> None:
    """测试渠道 Post a short test message and report the platform's answer."""
    from notifier.cli.common import run_async, settings_or_exit
    from notifier.service import App

    settings = settings_or_exit()

    async def go() -> str:
        async with App(settings) as app:
            spec = app.schedule.channels.get(channel_id)
            if spec is None:
                known = ", ".join(sorted(app.schedule.channels)) or "none"
                raise NotifierError(f"unknown channel '{channel_id}' (configured: {known})")
            chat = app.channels.chats.get(channel_id)
            if chat is None:
                missing = ", ".join(missing_variables(spec))
                raise NotifierError(f"channel '{channel_id}': variable {missing} is not set")
            now = time.time()
            msg = ChatMessage(
                key=f"test/{channel_id}", subject="notifier 测试消息 test message",
                text=TEST_TEXT, event_id="test", event_title="测试 test", occurrence="",
                start="", end="", reminder_id="test", reminder_label="测试",
            )  # fmt: skip
            app.channels.clear(channel_id)  # an operator's test: start from a clean slate
            try:
                await chat.send(test_row(channel_id, payload(spec, msg), now))
            except TransportError as exc:
                kind = "permanent" if exc.permanent else "temporary"
                raise NotifierError(
                    f"{chat.description}: platform answered {exc.message} ({kind})"
                ) from exc
            await app.store.set_meta(STATUS_META + channel_id, "")
            return f"已送达 delivered: {chat.description} answered success"

    click.echo(run_async(go))

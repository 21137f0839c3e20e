"""Several mail accounts: `channels: {x: {type: smtp, ...}}` beside the settings' SMTP server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from notifier.checks import load_config
from notifier.errors import ConfigError
from notifier.service import App
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import SmtpServer

TWO_ACCOUNTS = """\
channels:
  outreach-mail:
    type: smtp
    host_env: OUTREACH_SMTP_HOST
    port: {port}
    security: none
    mail_from: waiban@mail.fao.example.com
    pool_size: 2
audiences:
  staff: [{{email: fazhi@fao.example.com, name: 法治处}}]
  enterprises:
    channel: outreach-mail
    external: true
    members: [{{email: biz0@trade0.example.com, name: 星海贸易}}]
events:
  - id: apec-card
    title: APEC商务旅行卡政策解读会
    date: "2027-03-18"
    audience: enterprises
    reminders: [{{before: 7 days}}]
  - id: staff-only
    title: 内部提醒
    date: "2027-03-18"
    reminders: [{{on: start}}]
"""


def _to(server: SmtpServer) -> list[str]:
    return [str(m["To"]).split("<")[-1].rstrip(">") for m in server.sink.messages]


async def test_an_audience_with_a_mail_channel_goes_out_through_its_account_and_sender(
    make_settings: MakeSettings,
    smtp_server: Callable[..., SmtpServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay, public = smtp_server(), smtp_server()
    monkeypatch.setenv("OUTREACH_SMTP_HOST", "127.0.0.1")
    settings = make_settings(smtp=smtp_settings(relay))
    write_schedule(settings.schedules_dir, TWO_ACCOUNTS.format(port=public.port))
    async with App(settings) as app:
        await app.outbox.send_now("apec-card", now=app.clock())
        await app.outbox.send_now("staff-only", now=app.clock())
        stats = await app.run_until_idle()
        rows = {r.recipient: r for r in await app.store.list_deliveries()}
    assert stats.sent == 2
    assert _to(public) == ["biz0@trade0.example.com"]
    assert _to(relay) == ["fazhi@fao.example.com"]
    assert "waiban@mail.fao.example.com" in str(public.sink.messages[0]["From"])
    assert "notifier@fao.example.com" in str(relay.sink.messages[0]["From"])
    assert rows["biz0@trade0.example.com"].channel == "outreach-mail"
    assert rows["fazhi@fao.example.com"].channel == "email"


def test_check_names_the_unset_variable_of_a_mail_channel_in_use(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OUTREACH_SMTP_HOST", raising=False)
    settings = make_settings()
    write_schedule(settings.schedules_dir, TWO_ACCOUNTS.format(port=2525))
    with pytest.raises(ConfigError) as caught:
        load_config(settings, now=datetime(2027, 3, 1, tzinfo=settings.tz))
    assert "channels.outreach-mail: variable OUTREACH_SMTP_HOST is not set" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("channel: outreach-mail", "channel: nowhere"), "enterprises.channel: 'nowhere'"),
        (("    mail_from: waiban@mail.fao.example.com\n", ""), "needs host_env and mail_from"),
        (("    pool_size: 2", "    url_env: SOME_URL"), "url_env: not for a mail channel"),
        (("    port: 2525", "    limits: 30/fortnight"), "'30/fortnight' is not a limit"),
    ],
)
def test_a_bad_mail_channel_is_a_config_error_naming_the_place(
    make_settings: MakeSettings,
    monkeypatch: pytest.MonkeyPatch,
    change: tuple[str, str],
    message: str,
) -> None:
    monkeypatch.setenv("OUTREACH_SMTP_HOST", "127.0.0.1")
    settings = make_settings()
    text = TWO_ACCOUNTS.format(port=2525).replace(*change)
    write_schedule(settings.schedules_dir, text)
    with pytest.raises(ConfigError) as caught:
        load_config(settings, now=datetime(2027, 3, 1, tzinfo=settings.tz))
    assert message in str(caught.value)


async def test_a_mail_channels_own_limits_hold_its_rows_and_not_the_default_channels(
    make_settings: MakeSettings,
    smtp_server: Callable[..., SmtpServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay, public = smtp_server(), smtp_server()
    monkeypatch.setenv("OUTREACH_SMTP_HOST", "127.0.0.1")
    settings = make_settings(smtp=smtp_settings(relay))
    text = TWO_ACCOUNTS.format(port=public.port).replace(
        "    pool_size: 2", '    pool_size: 2\n    limits: "1/day"'
    )
    text = text.replace(
        "members: [{email: biz0@trade0.example.com, name: 星海贸易}]",
        "members: [{email: biz0@trade0.example.com}, {email: biz1@trade1.example.com}]",
    )
    write_schedule(settings.schedules_dir, text)
    async with App(settings) as app:
        await app.outbox.send_now("apec-card", now=app.clock())
        await app.outbox.send_now("staff-only", now=app.clock())
        stats = await app.run_until_idle()
    assert (stats.sent, stats.deferred) == (2, 1)
    assert len(public.sink.messages) == 1 and len(relay.sink.messages) == 1

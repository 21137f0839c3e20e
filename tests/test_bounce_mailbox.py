"""The bounce mailbox against a real IMAP server (Dovecot): bounces of ours are learned from
and filed away; human mail, auto-replies and others' bounces are left exactly as they were."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr

from notifier.config import BounceSettings
from notifier.ledger.models import State
from notifier.service import App
from tests import bounce_samples as samples
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.imap_server import ImapServer
from tests.smtp_server import SmtpServer

BOX = "waiban@fao.example.com"
PASSWORD = "imap-password-for-tests"
ADDRESSES = [f"gone{i}@trade{i}.example.com" for i in range(4)]
SCHEDULE = f"""\
audiences:
  enterprises:
    external: true
    members: [{", ".join(f"{{email: {a}, name: 企业{i}}}" for i, a in enumerate(ADDRESSES))}]
events:
  - id: outreach
    title: APEC商务旅行卡政策解读会
    date: "2027-03-18"
    audience: enterprises
    reminders: [{{on: start}}]
"""


@pytest.fixture
def imap() -> Iterator[ImapServer]:
    with ImapServer(BOX, PASSWORD) as server:
        yield server


async def test_bounces_of_ours_are_learned_and_filed_and_other_mail_is_left_alone(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer], imap: ImapServer
) -> None:
    sink = smtp_server()
    bounces = BounceSettings(
        imap_url=f"imap://{BOX.replace('@', '%40')}@127.0.0.1:{imap.port}/INBOX",
        imap_password=SecretStr(PASSWORD),
        poll_seconds=60,
    )
    settings = make_settings(smtp=smtp_settings(sink), bounces=bounces)
    write_schedule(settings.schedules_dir, SCHEDULE)
    async with App(settings) as app:
        await app.outbox.send_now("outreach", now=app.clock())
        await app.run_until_idle()
        rows = {r.recipient: r for r in await app.store.list_deliveries()}
        kinds = [samples.POSTFIX, samples.EXIM, samples.EXCHANGE, samples.CHINESE]
        for address, kind in zip(ADDRESSES, kinds, strict=True):
            imap.append(samples.render(kind, mid=rows[address].message_id, to=address, box=BOX))
        first = rows[ADDRESSES[0]].message_id
        imap.append(samples.render(samples.UNRELATED, mid=first, to=ADDRESSES[0], box=BOX))
        imap.append(samples.render(samples.OUT_OF_OFFICE, mid=first, to=ADDRESSES[0], box=BOX))
        foreign = samples.render(
            samples.POSTFIX, mid="<by-hand@fao.example.com>", to="x@y.example.com", box=BOX
        ).replace(b"B8A2E1C0@mx", b"FOREIGN0@mx")  # a bounce of mail someone sent by hand
        imap.append(foreign)
        before = {mid: flags for mid, flags in imap.listing("INBOX")}

        assert app.bounce_reader is not None
        tally = await app.bounce_reader.poll()
        again = await app.bounce_reader.poll()
        bounced = await app.store.list_deliveries(state=State.BOUNCED)
        suppressed = await app.suppressions.entries()

    assert (tally.read, tally.matched, tally.suppressed, tally.left) == (7, 4, 4, 3)
    assert again.read == 0  # only new mail is read
    assert sorted(r.recipient for r in bounced) == sorted(ADDRESSES)
    assert sorted(e.address for e in suppressed) == sorted(ADDRESSES)
    assert {e.source for e in suppressed} == {"bounce"}
    assert any("收件人地址不存在" in e.excerpt for e in suppressed)
    left = dict(imap.listing("INBOX"))
    assert set(left) == {
        "<question-1@trade.example.com>",
        "<ooo-1@trade.example.com>",
        "<20270317010005.FOREIGN0@mx.fao.example.com>",
    }
    # Not even marked read (\Recent is the server's own session state).
    assert all(_flags(left[m]) == _flags(before[m]) and "\\Seen" not in left[m] for m in left)
    assert len(imap.listing("notifier-processed")) == 4


def _flags(flags: str) -> set[str]:
    return set(flags.split()) - {"\\Recent"}


async def test_a_mail_channel_reads_its_own_bounce_mailbox(
    make_settings: MakeSettings,
    smtp_server: Callable[..., SmtpServer],
    imap: ImapServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = smtp_server()
    monkeypatch.setenv("OUTREACH_HOST", "127.0.0.1")
    monkeypatch.setenv("OUTREACH_IMAP_PASSWORD", PASSWORD)
    channel = f"""\
channels:
  outreach-mail:
    type: smtp
    host_env: OUTREACH_HOST
    port: {sink.port}
    mail_from: {BOX}
    bounces:
      imap_url: imap://{BOX.replace("@", "%40")}@127.0.0.1:{imap.port}/INBOX
      imap_password_env: OUTREACH_IMAP_PASSWORD
      processed_folder: 已处理
"""
    settings = make_settings()
    text = SCHEDULE.replace(
        "    external: true\n", "    external: true\n    channel: outreach-mail\n"
    )
    write_schedule(settings.schedules_dir, channel + text)
    async with App(settings) as app:
        await app.outbox.send_now("outreach", now=app.clock())
        await app.run_until_idle()
        row = next(r for r in await app.store.list_deliveries() if r.recipient == ADDRESSES[0])
        imap.append(samples.render(samples.EXIM, mid=row.message_id, to=ADDRESSES[0], box=BOX))
        (reader,) = app.bounce_readers()
        tally = await reader.poll()
        (entry,) = await app.suppressions.entries()
        masked = app.mask_secrets(f"LOGIN failed: {PASSWORD}")
    assert PASSWORD not in masked  # the channel's IMAP password, out of every error text
    assert reader.account == "outreach-mail" and row.channel == "outreach-mail"
    assert (tally.matched, tally.suppressed) == (1, 1)
    assert entry.address == ADDRESSES[0]


def test_folder_names_are_written_in_modified_utf7() -> None:
    from notifier.bounces.mailbox import _mutf7

    assert _mutf7("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"  # RFC 3501
    assert _mutf7("A&B") == "A&-B"

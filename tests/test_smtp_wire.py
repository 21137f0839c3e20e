"""SMTP transactions on the wire (channels/smtp_wire.py): pipelined where the server offers it,
the final dot held for the lane's last commit, and refusals classified as before.

Real servers: aiosmtpd (tests/smtp_server.py) and, where the byte order on the socket is the
point, a scripted asyncio server that answers only what a pipelining client would have sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email import message_from_bytes
from email.policy import default

import pytest

from notifier.channels.base import HeldChannel, NotSent, TransportError
from notifier.channels.email import SmtpChannel
from notifier.channels.smtp_wire import wire_body
from notifier.config import SmtpSettings
from notifier.ledger.models import Delivery
from tests.conftest import delivery_row, smtp_settings
from tests.smtp_server import Faults, SmtpServer

MESSAGE = (
    "From: notifier@example.gov.cn\r\n"
    "To: {to}\r\n"
    "Subject: =?utf-8?b?5a6q5rOV5a6j5Lyg5ZGo?=\r\n"
    "Message-ID: <{n}@notifier.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "line one\r\n"
)


def delivery(n: int, to: str = "a@example.com", message: str | None = None) -> Delivery:
    body = message if message is not None else MESSAGE.format(to=to, n=n)
    return delivery_row(
        id=n, key=f"k{n}", recipient=to, message_id=f"<{n}@notifier.test>", message=body
    )


def channel(server: SmtpServer, **overrides: object) -> SmtpChannel:
    return SmtpChannel(smtp_settings(server, **overrides), envelope_from="notifier@example.gov.cn")


async def test_the_smtp_channel_can_hold_its_final_dot() -> None:
    settings = SmtpSettings(host="127.0.0.1", port=25)
    assert isinstance(SmtpChannel(settings, envelope_from="a@b.cn"), HeldChannel)


async def test_a_message_arrives_whole_with_its_dots_and_bare_line_ends_restored(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    body = "From: a@b.cn\nTo: a@example.com\nSubject: x\n\n.leading dot\n..two\nend\r\n."
    ch = channel(server)
    try:
        await ch.send(delivery(1, message=body))
    finally:
        await ch.close()
    raw = server.sink.raw[0]
    assert raw.replace(b"\r\n", b"\n") == body.replace("\r\n", "\n").encode() + b"\n"
    parsed = message_from_bytes(raw, policy=default)
    assert parsed.get_content().splitlines() == [".leading dot", "..two", "end", "."]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
async def test_messages_share_one_connection_with_or_without_pipelining(
    smtp_server: Callable[..., SmtpServer], pipelining: bool
) -> None:
    server = smtp_server(pipelining=pipelining)
    ch = channel(server)
    try:
        for n in range(5):
            await ch.send(delivery(n, to=f"r{n}@example.com"))
    finally:
        await ch.close()
    assert server.sink.recipients() == [f"r{n}@example.com" for n in range(5)]
    assert len(server.sink.sessions) == 1


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
async def test_a_refused_recipient_is_a_bounce_and_the_session_carries_the_next_message(
    smtp_server: Callable[..., SmtpServer], pipelining: bool
) -> None:
    server = smtp_server(Faults(reject={"gone@example.com"}), pipelining=pipelining)
    ch = channel(server)
    try:
        with pytest.raises(TransportError) as refused:
            await ch.send(delivery(1, to="gone@example.com"))
        await ch.send(delivery(2, to="here@example.com"))
    finally:
        await ch.close()
    assert refused.value.permanent and refused.value.bounce
    assert refused.value.code == "550" and "no such user" in refused.value.message
    assert server.sink.recipients() == ["here@example.com"]
    assert len(server.sink.sessions) == 1


async def test_a_451_after_data_is_a_retry_not_a_bounce(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server(Faults(fail_first=1))
    ch = channel(server)
    try:
        with pytest.raises(TransportError) as failed:
            await ch.send(delivery(1))
        await ch.send(delivery(2))
    finally:
        await ch.close()
    assert not failed.value.permanent and failed.value.code == "451"
    assert server.sink.message_ids() == ["<2@notifier.test>"]


async def test_the_final_dot_waits_for_ready_and_then_the_message_is_the_servers(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    ch = channel(server)
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    try:
        send = asyncio.create_task(ch.send_held(delivery(1), ready, 5.0))
        await asyncio.sleep(0.3)  # envelope and body are on the wire by now
        assert not send.done()
        assert server.sink.attempts == 0, "the server took the message before its dot"
        ready.set_result(None)
        await asyncio.wait_for(send, 5)
    finally:
        await ch.close()
    assert server.sink.message_ids() == ["<1@notifier.test>"]


async def test_a_hold_past_its_bound_sends_nothing_and_the_next_send_goes_out(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    ch = channel(server)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    try:
        with pytest.raises(NotSent):
            await ch.send_held(delivery(1), never, 0.2)
        await ch.send(delivery(2))
        await asyncio.sleep(0.2)  # a late delivery of #1 would have shown by now
    finally:
        await ch.close()
    # The connection closed inside DATA: the server discarded #1 and never saw its dot.
    assert server.sink.attempts == 1
    assert server.sink.message_ids() == ["<2@notifier.test>"]
    assert len(server.sink.sessions) == 1  # the aborted session sent no DATA at all


async def _scripted_server(
    script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        line = await reader.readline()
        assert line.upper().startswith(b"EHLO")
        writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_mail_rcpt_and_data_go_out_before_the_first_reply_comes_back() -> None:
    """A server that answers nothing until it has read the whole group: a client that waits
    for MAIL's reply before sending RCPT would time out here."""
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            seen.append(await reader.readline())
        # All three replies in one write, the first a multi-line one, as Postfix may.
        writer.write(b"250-2.1.0 Ok\r\n250 2.1.0 sender ok\r\n250 2.1.5 Ok\r\n354 go\r\n")
        body = await reader.readuntil(b"\r\n.\r\n")
        seen.append(body)
        # The final reply split across two writes, mid-line.
        writer.write(b"250 2.0.0 ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"queued as X\r\n")
        assert (await reader.readline()).startswith(b"QUIT")
        writer.write(b"221 bye\r\n")

    server, port = await _scripted_server(script)
    ch = SmtpChannel(
        SmtpSettings(host="127.0.0.1", port=port, timeout=2.0, security="none"),
        envelope_from="notifier@example.gov.cn",
    )
    try:
        await ch.send(delivery(7, to="r@example.com"))
    finally:
        await ch.close()
        server.close()
    assert seen[0].startswith(b"MAIL FROM:<notifier@example.gov.cn>")
    assert seen[1] == b"RCPT TO:<r@example.com>\r\n"
    assert seen[2] == b"DATA\r\n"
    assert b"Message-ID: <7@notifier.test>" in seen[3]


async def test_a_server_that_never_answers_the_group_is_a_timeout_and_a_retry() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads until the client hangs up, answers nothing

    server, port = await _scripted_server(script)
    ch = SmtpChannel(
        SmtpSettings(host="127.0.0.1", port=port, timeout=0.3, security="none"),
        envelope_from="notifier@example.gov.cn",
    )
    try:
        with pytest.raises(TransportError) as failed:
            await ch.send(delivery(1))
    finally:
        await ch.close()
        server.close()
    assert not failed.value.permanent and failed.value.message.startswith("timeout")


async def test_an_address_with_a_line_break_is_refused_before_anything_is_written(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    ch = channel(server)
    try:
        with pytest.raises(TransportError) as refused:
            await ch.send(delivery(1, to="a@example.com>\r\nRCPT TO:<b@example.com"))
        await ch.send(delivery(2))
    finally:
        await ch.close()
    assert refused.value.permanent and not refused.value.bounce
    assert server.sink.recipients() == ["a@example.com"]


def test_the_wire_form_is_crlf_dot_stuffed_and_ends_in_crlf() -> None:
    assert wire_body("a\nb") == (b"a\r\nb\r\n", False)
    assert wire_body(".x\r\n.y\r\n") == (b"..x\r\n..y\r\n", False)
    assert wire_body("a\rb\r\n") == (b"a\r\nb\r\n", False)
    assert wire_body("宪法\n") == ("宪法\r\n".encode(), True)


async def test_a_kill_between_hold_and_dot_leaves_nothing_at_the_server(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    """What a SIGKILL does to a held message: the connection ends inside DATA."""
    server = smtp_server()
    ch = channel(server)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    send = asyncio.create_task(ch.send_held(delivery(1), never, 30.0))
    await asyncio.sleep(0.2)
    send.cancel()  # the worker's cancel path closes the connection, as a kill would
    with pytest.raises(asyncio.CancelledError):
        await send
    await ch.close()
    await asyncio.sleep(0.2)
    assert server.sink.attempts == 0


async def test_a_line_the_server_sent_unasked_retires_its_connection() -> None:
    """A pooled connection with an unread line (a server's "421 idle timeout" before it hangs
    up) is not reused: that line would be taken for the next command's reply."""
    sessions = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sessions
        sessions += 1
        for _ in range(3):
            await reader.readline()
        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"250 queued\r\n")
        if sessions == 1:
            writer.write(b"421 4.4.2 idle too long\r\n")  # unasked; the socket stays open
        await writer.drain()
        await reader.read()  # until the client hangs up

    server, port = await _scripted_server(script)
    ch = SmtpChannel(
        SmtpSettings(host="127.0.0.1", port=port, timeout=2.0, security="none"),
        envelope_from="notifier@example.gov.cn",
    )
    try:
        await ch.send(delivery(1))
        await asyncio.sleep(0.1)  # the unasked line arrives
        await ch.send(delivery(2))
    finally:
        await ch.close()
        server.close()
    assert sessions == 2


async def test_a_sender_written_with_a_display_name_goes_out_as_its_address() -> None:
    """NOTIFIER_MAIL_FROM="法治处 <notifier@example.gov.cn>": the envelope carries the address."""
    lines: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            lines.append(await reader.readline())
        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"250 queued\r\n")
        await writer.drain()
        await reader.readline()  # QUIT
        writer.write(b"221 bye\r\n")

    server, port = await _scripted_server(script)
    ch = SmtpChannel(
        SmtpSettings(host="127.0.0.1", port=port, timeout=2.0, security="none"),
        envelope_from="法治处 <notifier@example.gov.cn>",
    )
    try:
        await ch.send(delivery(1))
    finally:
        await ch.close()
        server.close()
    assert lines[0].startswith(b"MAIL FROM:<notifier@example.gov.cn>")

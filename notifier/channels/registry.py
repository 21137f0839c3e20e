"""The channels, built once in the App: email, plus one object per configured robot or webhook.

The worker asks `route(row)` for the row's channel (the row's `channel` column: "email", or a
channel id) and that channel's pace. A reload rebuilds the chat channels from the new
schedule; a channel's status (its last configuration error, a 410 disable) survives the
rebuild and, through the ledger's meta table, a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiolimiter import AsyncLimiter
from pydantic import SecretStr

from notifier.channels.base import Channel, TransportError
from notifier.channels.email import SmtpChannel
from notifier.channels.maildrop import MailDropChannel
from notifier.channels.status import ChannelStatus, StatusHook
from notifier.config import Settings, SmtpSettings, read_secret
from notifier.keys import EMAIL
from notifier.ledger.models import Delivery
from notifier.schedule.model import ChannelSpec

if TYPE_CHECKING:
    import aiohttp

    from notifier.channels.http import HttpChannel

log = logging.getLogger(__name__)

STATUS_META = "channel_status:"  # + channel id, in the meta table


def chat_kinds() -> dict[str, type[HttpChannel]]:
    """The robots' channel classes by `type:`, loaded on first use: with aiohttp's client they
    cost about 0.2 s of imports, which a calendar without robots (and `notifier send` to
    one) does not pay."""
    from notifier.channels.dingtalk import DingTalkChannel
    from notifier.channels.feishu import FeishuChannel
    from notifier.channels.webhook import WebhookChannel
    from notifier.channels.wecom import WeComChannel

    return {
        "wecom": WeComChannel,
        "dingtalk": DingTalkChannel,
        "feishu": FeishuChannel,
        "webhook": WebhookChannel,
    }


def missing_variables(spec: ChannelSpec) -> list[str]:
    """The channel's variables that are not set (environment, then `.env`)."""
    if spec.smtp is not None:
        names = spec.smtp.variables
    else:
        names = [spec.url_env] + ([spec.secret_env] if spec.secret_env else [])
    return [n for n in names if read_secret(n) is None]


def account_settings(spec: ChannelSpec) -> SmtpSettings:
    """A mail channel's account as SMTP settings, its variables read (they must be set:
    `missing_variables` first). Raises ValueError for a value pydantic refuses."""
    smtp = spec.smtp
    assert smtp is not None
    host = read_secret(smtp.host_env)
    assert host is not None
    user = read_secret(smtp.username_env) if smtp.username_env else None
    return SmtpSettings(
        host=host.get_secret_value().strip(),
        port=smtp.port,
        username=user.get_secret_value().strip() if user is not None else None,
        password=read_secret(smtp.password_env) if smtp.password_env else None,
        security=smtp.security,
        allow_plain_auth=smtp.allow_plain_auth,
        timeout=smtp.timeout,
        pool_size=smtp.pool_size,
        limits=smtp.limits,
    )


class UnknownChannel:
    """Rows of a channel no longer configured: retried, but not before a fixed wait.

    It comes back only when an operator fixes the config, so a jittered backoff near
    zero would only burn attempts (and a burst would claim the row twice).
    """

    send_timeout = 1.0
    wait_seconds = 60.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"unknown channel {name}"

    async def send(self, delivery: Delivery) -> None:
        raise TransportError(
            f"channel '{self.name}' is not configured (or its variables unset)",
            retry_after=self.wait_seconds,
        )

    async def close(self) -> None:
        return None


class ChannelRegistry:
    def __init__(self, email: Channel, *, on_status: StatusHook | None = None) -> None:
        self.email = email
        self.chats: dict[str, HttpChannel] = {}
        # Mail channels (`type: smtp`): accounts of their own beside the settings' server.
        self.mails: dict[str, SmtpChannel] = {}
        self.statuses: dict[str, ChannelStatus] = {}
        self.skipped: dict[str, list[str]] = {}  # channel id -> its unset variables
        self._on_status = on_status
        self._closing: set[asyncio.Task[None]] = set()  # retired mail channels closing
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """One ClientSession for every robot (its connection pool), made on first use."""
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64), trust_env=False
            )
        return self._session

    def build(self, specs: Mapping[str, ChannelSpec]) -> None:
        """(Re)make the chat channels from the schedule; statuses are kept by id."""
        chats: dict[str, HttpChannel] = {}
        mails: dict[str, SmtpChannel] = {}
        skipped: dict[str, list[str]] = {}
        for cid, spec in specs.items():
            missing = missing_variables(spec)
            if missing:
                skipped[cid] = missing
                continue
            if spec.smtp is not None:
                mails[cid] = self._mail(cid, spec)
                continue
            url = read_secret(spec.url_env)
            secret = read_secret(spec.secret_env) if spec.secret_env else None
            assert url is not None
            old = self.chats.get(cid)
            if old is not None and old.same(spec, url, secret):
                # Unchanged: keep its pace and any running penalty (a reload must not
                # reset a DingTalk 10-minute throttle or allow a burst).
                chats[cid] = old
                continue
            chats[cid] = self.make(spec, url=url, secret=secret)
        for cid, old_mail in self.mails.items():
            if mails.get(cid) is not old_mail:
                self._retire(old_mail)
        self.chats, self.mails, self.skipped = chats, mails, skipped

    def _mail(self, cid: str, spec: ChannelSpec) -> SmtpChannel:
        """The mail channel `cid`: the running one if its account is unchanged (its pooled
        connections kept), else a new one."""
        assert spec.smtp is not None
        settings = account_settings(spec)
        old = self.mails.get(cid)
        if (
            old is not None
            and old.settings == settings
            and old.envelope_from == spec.smtp.mail_from
        ):
            return old
        return SmtpChannel(settings, envelope_from=spec.smtp.mail_from, name=cid)

    def _retire(self, channel: SmtpChannel) -> None:
        """Close a mail channel a reload replaced or removed (its idle connections), on the
        loop if one runs; a send in progress finishes on its own connection."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(channel.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def sensitive(self) -> list[str]:
        """Every channel's secrets (robots' keys and URLs, mail passwords), for the masker."""
        out = [v for c in self.chats.values() for v in c.sensitive]
        for mail in self.mails.values():
            if mail.settings.password is not None:
                out.append(mail.settings.password.get_secret_value())
        return out

    def make(self, spec: ChannelSpec, *, url: SecretStr, secret: SecretStr | None) -> HttpChannel:
        status = self.statuses.setdefault(spec.id, ChannelStatus())
        return chat_kinds()[spec.type](
            spec,
            url=url,
            secret=secret,
            session=self.session,
            status=status,
            on_status=self._on_status,
        )

    def route(self, row: Delivery) -> tuple[Channel, AsyncLimiter | None]:
        """The row's channel and the pace it must keep (None: none)."""
        if row.channel == EMAIL:
            return self.email, None
        mail = self.mails.get(row.channel)
        if mail is not None:
            return mail, None
        chat = self.chats.get(row.channel)
        if chat is None:
            return UnknownChannel(row.channel), None
        return chat, chat.limiter

    def problems(self) -> list[str]:
        """Channels whose last answer was a configuration error, or that are disabled."""
        out = []
        for cid, st in sorted(self.statuses.items()):
            if st.config_error:
                state = "disabled" if st.disabled else "configuration error"
                out.append(f"channel {cid}: {state}: {st.config_error}")
        return out

    def load_statuses(self, saved: Mapping[str, str]) -> None:
        """Statuses saved in the meta table (by `status_record`) at an earlier run."""
        for cid, raw in saved.items():
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                continue
            if data.get("error"):
                st = self.statuses.setdefault(cid, ChannelStatus())
                st.config_error = str(data["error"])
                st.disabled = bool(data.get("disabled"))

    def status_record(self, cid: str) -> str:
        st = self.statuses.get(cid, ChannelStatus())
        if not st.config_error:
            return ""
        return json.dumps({"error": st.config_error, "disabled": st.disabled}, ensure_ascii=False)

    def clear(self, cid: str) -> None:
        st = self.statuses.get(cid)
        if st is not None:
            st.config_error, st.disabled = None, False

    async def close(self) -> None:
        for chat in self.chats.values():
            await chat.close()
        for mail in self.mails.values():
            await mail.close()
        await asyncio.gather(*self._closing, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


def email_channel(settings: Settings) -> Channel:
    """The settings' email channel: their SMTP server, or the local mail drop without one."""
    if settings.smtp.host:
        return SmtpChannel(settings.smtp, envelope_from=settings.mail_from)
    return MailDropChannel(settings.mail_drop_dir)

"""Service settings, read once from the environment and `.env` (pydantic-settings).

Built in the CLI and passed down; nothing in the package reads the environment on its own,
except the variables the schedules name: hook secrets (`secret_env`) and chat channels' URLs
and keys (`url_env`, `secret_env`). Those are read by `read_hook_secrets` and `read_secret`
at start, at each reload and on SIGHUP.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from dotenv import dotenv_values
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notifier.constants import (
    DEFAULT_DIGEST_AT,
    DEFAULT_GRACE,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PREPARE_AHEAD,
    MIN_LEASE_SECONDS,
)

# A quota's windows, in seconds. Days are local days (NOTIFIER_TIMEZONE): providers reset
# their daily quota at local midnight, not UTC's (see delivery/quotas.py).
RATE_WINDOWS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` messages per `window` ("second", "minute", "hour" or "day")."""

    count: int
    window: str

    @property
    def seconds(self) -> int:
        return RATE_WINDOWS[self.window]

    def __str__(self) -> str:
        return f"{self.count}/{self.window}"


@functools.lru_cache(maxsize=64)  # read before every send of an account with limits
def parse_limits(text: str) -> tuple[Rate, ...]:
    """`"30/minute, 500/hour, 2000/day"` -> its rates (one per window). Raises ValueError
    naming the part that is wrong; "" is no limit."""
    rates: dict[str, Rate] = {}
    for part in (p for p in text.split(",") if p.strip()):
        m = _RATE.match(part)
        if m is None:
            raise ValueError(
                f"{part.strip()!r} is not a limit: N/second, N/minute, N/hour or N/day, "
                'comma-separated (e.g. "30/minute, 500/hour, 2000/day")'
            )
        count, window = int(m.group(1)), m.group(2)
        if count < 1:
            raise ValueError(f"{part.strip()!r}: the count must be at least 1")
        if window in rates:
            raise ValueError(f"{part.strip()!r}: a second limit per {window}")
        rates[window] = Rate(count, window)
    return tuple(sorted(rates.values(), key=lambda r: r.seconds))


class SmtpSettings(BaseModel):
    """Where mail goes. No host means the local mail drop (a Maildir).

    `security`: `auto` upgrades with STARTTLS when the server offers it and stays plain
    otherwise (aiosmtplib's own default); `starttls` and `tls` (port 465) insist on it; `none`
    is for a known plain relay. A password is never sent over a plain connection unless
    `allow_plain_auth` says so.
    """

    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    security: Literal["auto", "none", "starttls", "tls"] = "auto"
    allow_plain_auth: bool = False
    # Certificates to trust besides the system's (an office CA; a test's self-signed one).
    ca_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)
    pool_size: int = Field(default=8, ge=1, le=64)
    rate_limit: float = Field(default=0.0, ge=0, description="messages per second; 0 = no limit")
    # The account's quotas, shared by every instance on the same database (delivery/quotas.py):
    # "30/minute, 500/hour, 2000/day". `rate_limit` still works: each instance's own pace.
    limits: str = ""

    @field_validator("limits")
    @classmethod
    def _limits(cls, value: str) -> str:
        parse_limits(value)
        return value

    # After a throttle reply the whole account pauses: this long first, doubling up to the
    # max (a reply that says the day's quota is gone: to the next local midnight).
    pause_seconds: float = Field(default=60.0, gt=0)
    pause_max_seconds: float = Field(default=3600.0, gt=0)

    @property
    def rates(self) -> tuple[Rate, ...]:
        """The shared quotas (`limits`). `rate_limit` stays the per-instance pace it was."""
        return parse_limits(self.limits)

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> SmtpSettings:
        if self.security == "none" and self.username and not self.allow_plain_auth:
            raise ValueError(
                "NOTIFIER_SMTP__SECURITY=none with NOTIFIER_SMTP__USERNAME set would send the "
                "password in clear: use starttls or tls, or set "
                "NOTIFIER_SMTP__ALLOW_PLAIN_AUTH=true for a trusted relay "
                "(明文连接不发送密码)"
            )
        return self


class BounceSettings(BaseModel):
    """The bounce mailbox, read over IMAP (notifier/bounces/): often the sending account's own
    INBOX, since hosted mail rarely lets a sender set its own Return-Path.

    `imap_url`: `imaps://user@host:993/INBOX` (TLS), or `imap://user@host:143/INBOX`
    (STARTTLS when the server offers it; the password goes in clear only to a loopback
    server). A user name with `@` is written `%40`.
    """

    imap_url: str | None = None
    imap_password: SecretStr | None = None
    poll_seconds: float = Field(default=300.0, gt=0)
    processed_folder: str = Field(default="notifier-processed", min_length=1, max_length=200)

    @field_validator("imap_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
            raise ValueError(
                f"{mask_url(value)!r} is not an IMAP URL: imaps://user@host:993/INBOX or "
                "imap://user@host:143/INBOX (a user name with @ is written %40)"
            )
        return value.strip()

    @property
    def folder(self) -> str:
        assert self.imap_url is not None
        return unquote(urlsplit(self.imap_url).path.lstrip("/")) or "INBOX"


def mask_url(value: str) -> str:
    """A URL without its password, if it carries one."""
    parts = urlsplit(value)
    if parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    enabled: bool = True


class DeliverySettings(BaseModel):
    """How the worker retries. Backoff grows exponentially with full jitter, up to `max_delay`."""

    batch_size: int = Field(default=64, ge=1, le=1000)
    # Renewed every third of it while a send runs: independent of the SMTP timeout.
    lease_seconds: float = Field(default=DEFAULT_LEASE_SECONDS, ge=MIN_LEASE_SECONDS)
    base_delay: float = Field(default=5.0, gt=0)
    max_delay: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=12, ge=1)
    give_up_after: float = Field(default=86400.0, gt=0, description="seconds after due_at")
    poll_interval: float = Field(default=1.0, gt=0)


_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class NoticeSettings(BaseModel):
    """The admins' notices (`admins:` in the schedules; README, 管理员通知 Admin notices)."""

    # The previous day's digest of failed deliveries goes out at this local time
    # (NOTIFIER_TIMEZONE), or at the first planning pass after it.
    digest_at: time = DEFAULT_DIGEST_AT

    @field_validator("digest_at", mode="before")
    @classmethod
    def _hh_mm(cls, value: object) -> object:
        if isinstance(value, time):
            if value.tzinfo is not None:
                raise ValueError("a local time (NOTIFIER_TIMEZONE), without a zone")
            return value
        match = _HH_MM.match(str(value).strip())
        if not match:
            raise ValueError(f"{value!r} is not a time of day (HH:MM, e.g. 08:00)")
        return time(int(match.group(1)), int(match.group(2)))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    schedules_dir: Path = Path("schedules")
    templates_dir: Path = Path("templates")
    timezone: str = "Asia/Shanghai"
    database_url: str = "sqlite:///var/notifier.db"
    mail_from: str = "notifier@localhost"
    org_name: str = "notifier 提醒服务"
    mail_drop_dir: Path = Path("var/mail")
    # The base of unsubscribe links. Unset, it follows the HTTP listener (see below), so that
    # moving NOTIFIER_HTTP__PORT does not leave the links pointing at the old port.
    public_url: str = "http://127.0.0.1:8080"
    admin_token: SecretStr | None = None
    # The calendar feed's own read-only token (`/calendar.ics?token=...`). A token in a URL
    # ends up in calendar clients and proxy logs, so the feed never takes the admin token.
    calendar_token: SecretStr | None = None
    # The console's read-only sign-in (受众、投递记录 can be read, nothing can be done).
    viewer_token: SecretStr | None = None
    # The console's editors (法治处, 领事处): edit events and audiences; cannot send, retry,
    # import holiday notices or read the audit log.
    editor_token: SecretStr | None = None
    unsubscribe_secret: SecretStr | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    grace: timedelta = DEFAULT_GRACE
    prepare_ahead: timedelta = DEFAULT_PREPARE_AHEAD
    shutdown_timeout: float = Field(default=10.0, gt=0)
    watch: bool = True
    # `notifier run`'s event loop: uvloop where installed (Linux, macOS), else asyncio's own.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # A message's attachments, as sent (base64 adds a third), at most this many bytes: 20 MB
    # is the common limit of enterprise mailboxes (Exmail, Aliyun, 网易企业邮箱).
    max_attachments_bytes: int = Field(default=20 * 1000 * 1000, gt=0)
    smtp: SmtpSettings = SmtpSettings()
    http: HttpSettings = HttpSettings()
    delivery: DeliverySettings = DeliverySettings()
    notices: NoticeSettings = NoticeSettings()
    bounces: BounceSettings = BounceSettings()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("grace", "prepare_ahead", mode="before")
    @classmethod
    def _span(cls, value: object) -> object:
        if isinstance(value, str) and not value.startswith("P") and not value.isdigit():
            from notifier.dates.rules import parse_grace

            return parse_grace(value)
        return value

    @model_validator(mode="after")
    def _calendar_token_is_its_own(self) -> Settings:
        # Each token opens one door. The calendar token travels in URLs (calendar clients,
        # proxy logs): equal to the admin or viewer token, it would open the console too. A
        # viewer token equal to the admin token would sign every viewer in as an admin.
        tokens = {
            "NOTIFIER_ADMIN_TOKEN": self.admin_token,
            "NOTIFIER_CALENDAR_TOKEN": self.calendar_token,
            "NOTIFIER_VIEWER_TOKEN": self.viewer_token,
            "NOTIFIER_EDITOR_TOKEN": self.editor_token,
        }
        for name, other_name in (
            ("NOTIFIER_CALENDAR_TOKEN", "NOTIFIER_ADMIN_TOKEN"),
            ("NOTIFIER_VIEWER_TOKEN", "NOTIFIER_CALENDAR_TOKEN"),
            ("NOTIFIER_VIEWER_TOKEN", "NOTIFIER_ADMIN_TOKEN"),
            ("NOTIFIER_EDITOR_TOKEN", "NOTIFIER_ADMIN_TOKEN"),
            ("NOTIFIER_EDITOR_TOKEN", "NOTIFIER_VIEWER_TOKEN"),
            ("NOTIFIER_EDITOR_TOKEN", "NOTIFIER_CALENDAR_TOKEN"),
        ):
            token, other = tokens[name], tokens[other_name]
            if token is not None and other is not None:
                if token.get_secret_value() == other.get_secret_value():
                    raise ValueError(
                        f"{name} must differ from {other_name}: each token opens one door"
                        f" ({name} 不得与 {other_name} 相同)"
                    )
        return self

    @model_validator(mode="after")
    def _public_url_follows_http(self) -> Settings:
        if "public_url" not in self.model_fields_set:
            self.public_url = listener_url(self.http)
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def uses_mail_drop(self) -> bool:
        return not self.smtp.host


# Hosts that mean "every address": a link cannot name them, so it names this machine.
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def listener_url(http: HttpSettings) -> str:
    """`http://HOST:PORT` of the HTTP listener, the default NOTIFIER_PUBLIC_URL."""
    host = "127.0.0.1" if http.host in _WILDCARD_HOSTS else http.host
    if ":" in host:  # an IPv6 address is bracketed in a URL
        host = f"[{host}]"
    return f"http://{host}:{http.port}"


def read_secret(env_name: str, env_file: Path = Path(".env")) -> SecretStr | None:
    """One secret variable (a channel's URL or key): the environment, then `.env`.

    Called when channels are built (start, reload) and by `check`, never per send.
    """
    return read_hook_secrets([env_name], env_file).get(env_name)


def read_hook_secrets(
    env_names: Iterable[str], env_file: Path = Path(".env")
) -> dict[str, SecretStr]:
    """The webhook secrets the schedules name, by variable: the environment, then `.env`.

    Read at start and at each reload (not per request: parsing `.env` on every webhook cost
    more than verifying it). A variable that is set nowhere is absent from the result.
    """
    found: dict[str, SecretStr] = {}
    missing: list[str] = []
    for name in env_names:
        value = os.environ.get(name)
        if value:
            found[name] = SecretStr(value)
        else:
            missing.append(name)
    if missing and env_file.is_file():
        values = dotenv_values(env_file)
        for name in missing:
            value = values.get(name)
            if value:
                found[name] = SecretStr(value)
    return found

"""Service settings, read once from the environment and `.env` (pydantic-settings).

Built in the CLI and passed down; nothing in the package reads the environment on its own,
except hook secrets, whose variable names the schedules declare (`secret_env`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from dotenv import dotenv_values
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notifier.constants import (
    DEFAULT_GRACE,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PREPARE_AHEAD,
)


class SmtpSettings(BaseModel):
    """Where mail goes. No host means the local mail drop (a Maildir)."""

    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    security: Literal["none", "starttls", "tls"] = "none"
    timeout: float = Field(default=30.0, gt=0)
    pool_size: int = Field(default=8, ge=1, le=64)
    rate_limit: float = Field(default=0.0, ge=0, description="messages per second; 0 = no limit")


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    enabled: bool = True


class DeliverySettings(BaseModel):
    """How the worker retries. Backoff grows exponentially with full jitter, up to `max_delay`."""

    batch_size: int = Field(default=64, ge=1, le=1000)
    lease_seconds: float = Field(default=DEFAULT_LEASE_SECONDS, gt=0)
    base_delay: float = Field(default=5.0, gt=0)
    max_delay: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=12, ge=1)
    give_up_after: float = Field(default=86400.0, gt=0, description="seconds after due_at")
    poll_interval: float = Field(default=1.0, gt=0)


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
    public_url: str = "http://127.0.0.1:8080"
    admin_token: SecretStr | None = None
    # The console's read-only sign-in (受众、投递记录 can be read, nothing can be done).
    viewer_token: SecretStr | None = None
    unsubscribe_secret: SecretStr | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    grace: timedelta = DEFAULT_GRACE
    prepare_ahead: timedelta = DEFAULT_PREPARE_AHEAD
    shutdown_timeout: float = Field(default=10.0, gt=0)
    watch: bool = True
    # `notifier run`'s event loop: uvloop where installed (Linux, macOS), else asyncio's own.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    smtp: SmtpSettings = SmtpSettings()
    http: HttpSettings = HttpSettings()
    delivery: DeliverySettings = DeliverySettings()

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
            from notifier.rules import parse_grace

            return parse_grace(value)
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def uses_mail_drop(self) -> bool:
        return not self.smtp.host


def hook_secret(env_name: str, env_file: Path = Path(".env")) -> SecretStr | None:
    """A webhook secret from the variable the schedules name (environment, then `.env`).

    Read per request, so a rotated secret applies without a restart.
    """
    value = os.environ.get(env_name)
    if not value and env_file.is_file():
        value = dotenv_values(env_file).get(env_name)
    return SecretStr(value) if value else None

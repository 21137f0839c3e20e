"""The schedule as the service uses it: events, reminders, audiences, hooks, channels,
validated and resolved (`load.load_schedule` builds it from the files)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal

from notifier.dates.cadence import Cadence
from notifier.dates.rules import (
    DateSpec,
    Duration,
)
from notifier.dates.workdays import (
    WorkCalendar,
    WorkdayPolicy,
)
from notifier.schedule.recipients import Recipient
from notifier.schedule.sheets import Columns, read_audience

# --- the validated, resolved schedule ---


@dataclass(frozen=True, slots=True)
class Audience:
    """Recipients given inline, or a CSV or workbook streamed at send time (an audience can
    be 100,000 rows)."""

    name: str
    external: bool
    members: tuple[Recipient, ...] | None
    csv_path: Path | None  # the audience file: a CSV, or a workbook (.xlsx)
    size: int
    chat: str | None = None  # a channel id: the audience is one chat group, one message a send
    sheet: str | None = None  # a workbook's sheet; None = the first
    columns: Columns = field(default_factory=Columns)
    # An email channel's id (type smtp): the account its mail goes out through; None: the
    # settings' SMTP server (the "email" channel).
    mail_channel: str | None = None

    def recipients(self) -> Iterator[Recipient]:
        """The email recipients; none for a chat audience."""
        if self.chat is not None:
            return
        if self.members is not None:
            yield from self.members
            return
        assert self.csv_path is not None
        for _, recipient, _ in read_audience(self.csv_path, sheet=self.sheet, columns=self.columns):
            if recipient is not None:
                yield recipient


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a reminder's messages, as `check` found it. Its content is read
    when rows are made and stored once in the ledger by hash (what a row sends is fixed
    then, whatever happens to the file later)."""

    path: Path
    mime: str
    size: int  # bytes, when the schedule was loaded

    @property
    def name(self) -> str:
        """The file name the recipient sees."""
        return self.path.name


@dataclass(frozen=True, slots=True)
class Reminder:
    id: str
    kind: Literal["before", "on", "after"]
    value: Duration | Literal["start", "end"]
    send_at: time
    workdays: WorkdayPolicy
    audience: str
    template: str
    # A campaign cadence (`every:`): kind/value are then "on"/"start", its first send.
    every: Cadence | None = None
    # Every audience the reminder goes to, `audience` first (a YAML list names several).
    audiences: tuple[str, ...] = ()
    # Ids of the reminders it took over from: their sends count as its own (no resend).
    replaces: tuple[str, ...] = ()
    # The event's attachments, then its own.
    attachments: tuple[Attachment, ...] = ()

    @property
    def all_audiences(self) -> tuple[str, ...]:
        return self.audiences or (self.audience,)

    @property
    def label(self) -> str:
        """A Chinese phrase for templates: 提前10天, 提前3个工作日, 当天, 结束后1天, 每个工作日."""
        if self.every is not None:
            return self.every.label
        if isinstance(self.value, str):
            return "当天" if self.value == "start" else "结束当天"
        unit = {"days": "天", "weeks": "周", "workdays": "个工作日"}[self.value.unit]
        prefix = "提前" if self.kind == "before" else "结束后"
        return f"{prefix}{self.value.n}{unit}"


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    title: str
    description: str | None
    specs: tuple[DateSpec, ...]
    reminders: tuple[Reminder, ...]
    grace: timedelta | None
    vars: Mapping[str, Any]
    source: Path
    attachments: tuple[Attachment, ...] = ()  # the event's own (a manual send's)


@dataclass(frozen=True, slots=True)
class Hook:
    id: str
    secret_env: str
    template: str
    audience: str | None
    grace: timedelta | None
    source: Path
    attachments: tuple[Attachment, ...] = ()  # the only files a request can choose from


@dataclass(frozen=True, slots=True)
class Mention:
    mobiles: tuple[str, ...] = ()
    userids: tuple[str, ...] = ()
    all: bool = False


@dataclass(frozen=True, slots=True)
class BounceSpec:
    """A mail channel's bounce mailbox (its password in a named variable)."""

    imap_url: str
    imap_password_env: str | None = None
    poll_seconds: float = 300.0
    processed_folder: str = "notifier-processed"


@dataclass(frozen=True, slots=True)
class SmtpSpec:
    """A mail account of its own (`type: smtp`): the settings' SMTP keys, with the host and
    credentials in named variables (read by the channel registry, never here)."""

    host_env: str
    mail_from: str
    port: int = 25
    security: Literal["auto", "none", "starttls", "tls"] = "auto"
    username_env: str | None = None
    password_env: str | None = None
    pool_size: int = 4
    allow_plain_auth: bool = False
    timeout: float = 30.0
    limits: str = ""
    bounces: BounceSpec | None = None

    @property
    def variables(self) -> list[str]:
        """The variables it names, host first."""
        names = [self.host_env, self.username_env, self.password_env]
        if self.bounces is not None:
            names.append(self.bounces.imap_password_env)
        return [v for v in names if v]


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """A configured chat robot, outbound webhook or mail account (variables named, not read,
    here)."""

    id: str
    type: Literal["wecom", "dingtalk", "feishu", "webhook", "smtp"]
    url_env: str  # "" for a mail account (its variables are in `smtp`)
    secret_env: str | None
    mention: Mention
    per_minute: float | None
    per_second: float | None
    timeout: float | None
    concurrency: int | None
    source: Path
    penalty: float | None = None
    form: Literal["card", "post"] = "card"  # feishu: interactive card or post (rich text)
    smtp: SmtpSpec | None = None  # type smtp: the account


@dataclass(frozen=True)
class Schedule:
    """Everything the schedules directory says, validated and cross-checked."""

    events: Mapping[str, Event]
    audiences: Mapping[str, Audience]
    hooks: Mapping[str, Hook]
    calendar: WorkCalendar
    files: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    # The audiences told about the service's own business (moved sends, failures, rejects):
    # email audiences and chat groups, in the order `admins:` names them; () for none.
    admins: tuple[str, ...] = ()
    channels: Mapping[str, ChannelSpec] = field(default_factory=dict)
    # The file each year's `holidays:` table is in (one file per year).
    holiday_files: Mapping[int, Path] = field(default_factory=dict)

    def templates_used(self) -> set[str]:
        names = {r.template for e in self.events.values() for r in e.reminders}
        return names | {h.template for h in self.hooks.values()}

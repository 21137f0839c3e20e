"""The YAML shape of `schedules/*.yaml`: pydantic models that mirror the files, so that each
error's location is the path inside the file (`events[2].reminders[0].before`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from notifier.config import BounceSettings, parse_limits
from notifier.constants import (
    ERROR_VALUE_CHARS,
)
from notifier.dates.cadence import Cadence, parse_cadence
from notifier.dates.rules import (
    DateSpec,
    Duration,
    lunar_spec,
    month_spec,
    parse_date,
    parse_duration,
    parse_grace,
    rrule_spec,
)
from notifier.dates.workdays import (
    WorkdayPolicy,
)
from notifier.schedule.files import bounded_repr, clip, yaml_path

ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


def _scalar(value: object, what: str) -> str:
    """The text of a YAML scalar for a parser; a list, a mapping or an overlong text is
    refused here, quoted short, before `str()` could write out a huge (aliased) value."""
    if isinstance(value, list | dict | set | tuple):
        raise ValueError(f"{bounded_repr(value)} is not {what}")
    text = str(value)
    if len(text) > ERROR_VALUE_CHARS:
        raise ValueError(f"{bounded_repr(text)} is not {what} (too long)")
    return text


def _send_time(value: object) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads 09:00 unquoted as a sexagesimal integer (540); accept it as minutes.
        value = f"{value // 60:02d}:{value % 60:02d}"
    match = _TIME.match(_scalar(value, "a time of day (HH:MM)").strip())
    if not match:
        raise ValueError(f"{bounded_repr(value)} is not a time of day (HH:MM)")
    return time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


# --- raw file models: they mirror the YAML, so pydantic's error locations are the YAML paths ---


class _Raw(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RawReminder(_Raw):
    id: str | None = Field(default=None, pattern=ID_PATTERN)
    before: Duration | None = None
    on: Literal["start", "end"] | None = None
    after: Duration | None = None
    every: Cadence | None = None
    send_at: time | None = None
    workdays: WorkdayPolicy | None = None
    audience: str | list[str] | None = None
    template: str | None = None
    # Files sent with each message, relative to the schedules directory (after the event's).
    attachments: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    # Ids of reminders this one took over from (renamed, or a one-day send turned into a
    # series): what they already sent is not sent again.
    replaces: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(default_factory=list)

    @field_validator("replaces", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("every", mode="before")
    @classmethod
    def _cadence(cls, value: object) -> Cadence | None:
        return None if value is None else parse_cadence(_scalar(value, "a cadence"))

    @field_validator("before", "after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> Duration | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return parse_duration(value)
        if isinstance(value, str):
            return parse_duration(_scalar(value, "a duration"))
        raise ValueError(f"{bounded_repr(value)} is not a duration")

    @field_validator("send_at", mode="before")
    @classmethod
    def _time(cls, value: object) -> time | None:
        return None if value is None else _send_time(value)

    @model_validator(mode="after")
    def _exactly_one_trigger(self) -> RawReminder:
        given = [k for k in ("before", "on", "after", "every") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a reminder needs exactly one of before, on, after, every"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class RawEvent(_Raw):
    id: str = Field(pattern=ID_PATTERN, max_length=64)
    title: str = Field(min_length=1)
    description: str | None = None
    date: list[DateSpec] | None = None
    month: int | None = None
    lunar: DateSpec | None = None
    rrule: str | None = None
    duration: int | None = Field(default=None, ge=1, le=366)
    send_at: time | None = None
    workdays: WorkdayPolicy | None = None
    audience: str | list[str] | None = None
    template: str | None = None
    grace: timedelta | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    # Files sent with every reminder's messages, relative to the schedules directory.
    attachments: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    reminders: list[RawReminder] = Field(min_length=1)
    # Each reminder's index in the file, when the event was kept without its faulty ones.
    _positions: tuple[int, ...] | None = PrivateAttr(default=None)

    @field_validator("date", mode="before")
    @classmethod
    def _dates(cls, value: object) -> list[DateSpec] | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("an empty list of dates")
        return [parse_date(_scalar(item, "a date")) for item in items]

    @field_validator("month", mode="before")
    @classmethod
    def _month(cls, value: object) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{bounded_repr(value)} is not a month (1..12)")
        month_spec(value)
        return value

    @field_validator("lunar", mode="before")
    @classmethod
    def _lunar(cls, value: object) -> DateSpec | None:
        return None if value is None else lunar_spec(_scalar(value, "a lunar date"))

    @field_validator("grace", mode="before")
    @classmethod
    def _grace(cls, value: object) -> timedelta | None:
        return None if value is None else parse_grace(_scalar(value, "a time span"))

    @field_validator("send_at", mode="before")
    @classmethod
    def _time(cls, value: object) -> time | None:
        return None if value is None else _send_time(value)

    @model_validator(mode="after")
    def _exactly_one_date_key(self) -> RawEvent:
        given = [k for k in ("date", "month", "lunar", "rrule") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "an event needs exactly one of date, month, lunar, rrule"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.duration is not None and self.rrule is None:
            raise ValueError("duration is only for rrule events")
        if self.rrule is not None:
            rrule_spec(self.rrule, self.duration or 1)
        return self

    def numbered_reminders(self) -> list[tuple[int, RawReminder]]:
        """Each reminder with its index in the file, for the error paths."""
        positions = self._positions or range(len(self.reminders))
        return list(zip(positions, self.reminders, strict=True))

    def specs(self) -> list[DateSpec]:
        if self.date is not None:
            return list(self.date)
        if self.month is not None:
            return [month_spec(self.month)]
        if self.lunar is not None:
            return [self.lunar]
        assert self.rrule is not None
        return [rrule_spec(self.rrule, self.duration or 1)]


class RawRecipient(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    email: str
    name: str = ""


class RawColumns(_Raw):
    """Which header holds the address and the display name, when the names are the office's
    own (`columns: {email: 联系邮箱, name: 企业名称}`)."""

    email: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)


class RawAudience(_Raw):
    csv: str | None = None
    xlsx: str | None = None  # an Excel workbook: its first sheet, or `sheet:`
    sheet: str | None = Field(default=None, min_length=1)
    columns: RawColumns | None = None
    members: list[RawRecipient] | None = None
    external: bool = False
    chat: str | None = Field(default=None, pattern=ID_PATTERN)  # a channel id: one chat group
    # An email channel's id (`type: smtp`): the account this audience's mail goes out through;
    # unset, the settings' SMTP server (NOTIFIER_SMTP__*).
    channel: str | None = Field(default=None, pattern=ID_PATTERN)

    @model_validator(mode="after")
    def _one_source(self) -> RawAudience:
        given = [k for k in ("csv", "xlsx", "members", "chat") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an audience needs exactly one of csv, xlsx, members, chat")
        if self.sheet is not None and self.xlsx is None:
            raise ValueError("sheet: is for an xlsx: workbook")
        if self.columns is not None and self.csv is None and self.xlsx is None:
            raise ValueError("columns: is for a csv: or xlsx: file")
        # The key says what the file is: a workbook under csv: (or a CSV under xlsx:) is a
        # slip to point out, not to guess past.
        if self.csv is not None and self.csv.lower().endswith((".xlsx", ".xlsm", ".xls")):
            raise ValueError(f"{self.csv!r} is an Excel workbook: write xlsx: {self.csv}")
        if self.xlsx is not None and not self.xlsx.lower().endswith((".xlsx", ".xlsm")):
            raise ValueError(
                f"{self.xlsx!r} is not an .xlsx workbook (an .xls must be saved as .xlsx; "
                "a CSV goes under csv:)"
            )
        if self.chat is not None and self.channel is not None:
            raise ValueError(
                "channel names an email channel (type: smtp); a chat audience has its own "
                "in chat (聊天受众不使用 channel)"
            )
        if self.chat is not None and self.external:
            raise ValueError(
                "external: true is refused for a chat audience (chat groups have no unsubscribe)"
            )
        return self


CHANNEL_TYPES = ("wecom", "dingtalk", "feishu", "webhook", "smtp")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class RawMention(_Raw):
    mobiles: list[str] = Field(default_factory=list)
    userids: list[str] = Field(default_factory=list)
    all: bool = False


class RawBounces(_Raw):
    """A mail channel's own bounce mailbox: NOTIFIER_BOUNCES__* under the channel, the
    password in a named variable."""

    imap_url: str
    imap_password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    poll_seconds: float | None = Field(default=None, gt=0)
    processed_folder: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("imap_url")
    @classmethod
    def _url(cls, value: str) -> str:
        BounceSettings(imap_url=value)  # raises ValueError naming what is wrong
        return value


class RawChannel(_Raw):
    """A chat robot, an outbound webhook or a mail account (`type: smtp`); URL, secret, host
    and password come from the named variables."""

    type: Literal["wecom", "dingtalk", "feishu", "webhook", "smtp"]
    url_env: str | None = Field(default=None, pattern=_ENV_NAME)
    secret_env: str | None = Field(default=None, pattern=_ENV_NAME)
    mention: RawMention | None = None
    per_minute: float | None = Field(default=None, ge=0)  # 0 = no limit
    per_second: float | None = Field(default=None, ge=0)
    timeout: float | None = Field(default=None, gt=0, le=300)
    concurrency: int | None = Field(default=None, ge=1, le=16)
    penalty: float | None = Field(default=None, gt=0, le=3600)  # seconds after a throttle
    # Feishu only: an `interactive` card (the default) or a `post` (rich text, which chat
    # lists and search show as text).
    form: Literal["card", "post"] | None = None
    # type: smtp only: a mail account of its own (the settings' NOTIFIER_SMTP__* keys, with
    # the server and credentials in named variables).
    host_env: str | None = Field(default=None, pattern=_ENV_NAME)
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["auto", "none", "starttls", "tls"] | None = None
    username_env: str | None = Field(default=None, pattern=_ENV_NAME)
    password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    mail_from: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    pool_size: int | None = Field(default=None, ge=1, le=64)
    allow_plain_auth: bool | None = None
    limits: str | None = None  # "30/minute, 500/hour, 2000/day"
    bounces: RawBounces | None = None

    @field_validator("limits")
    @classmethod
    def _limits(cls, value: str | None) -> str | None:
        if value is not None:
            parse_limits(value)  # raises ValueError naming the bad part
        return value

    @model_validator(mode="after")
    def _fits_smtp(self) -> RawChannel:
        smtp_only = [k for k in _SMTP_KEYS if getattr(self, k) is not None]
        if self.type != "smtp":
            if smtp_only:
                raise ValueError(f"{', '.join(smtp_only)}: for type smtp only")
            if self.url_env is None:
                raise ValueError(f"a {self.type} channel needs url_env")
            return self
        chat_only = [
            k for k in ("url_env", "secret_env", "mention", "form") if getattr(self, k) is not None
        ]
        if chat_only:
            raise ValueError(f"{', '.join(chat_only)}: not for a mail channel (type smtp)")
        if self.host_env is None or self.mail_from is None:
            raise ValueError("a mail channel (type smtp) needs host_env and mail_from")
        if self.password_env is not None and self.username_env is None:
            raise ValueError("password_env without username_env")
        if self.security == "none" and self.username_env and not self.allow_plain_auth:
            raise ValueError(
                "security: none with a username would send the password in clear: use "
                "starttls or tls, or allow_plain_auth: true for a trusted relay "
                "(明文连接不发送密码)"
            )
        return self

    @model_validator(mode="after")
    def _fits_type(self) -> RawChannel:
        if self.form is not None and self.type != "feishu":
            raise ValueError(
                f"form is for feishu channels (card | post), not the {self.type} type "
                "(form 仅适用于飞书渠道)"
            )
        if self.type == "webhook" and self.mention is not None:
            raise ValueError("mention is for chat robots, not the webhook type")
        if self.type == "webhook" and self.secret_env is None:
            raise ValueError("a webhook channel needs secret_env (its whsec_... signing secret)")
        if self.type == "feishu" and self.mention is not None and self.mention.mobiles:
            raise ValueError("feishu mentions take userids (open_id), not mobiles")
        return self


_SMTP_KEYS = (
    "host_env", "port", "security", "username_env", "password_env", "mail_from", "pool_size",
    "allow_plain_auth", "limits", "bounces",
)  # fmt: skip


class RawHook(_Raw):
    id: str = Field(pattern=ID_PATTERN, max_length=64)
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    template: str
    audience: str | None = None
    grace: timedelta | None = None
    # The hook's own files (relative to the schedules directory): all of them with each
    # message, or those a request names by file name in `attachments` (never a path).
    attachments: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)

    @field_validator("grace", mode="before")
    @classmethod
    def _grace(cls, value: object) -> timedelta | None:
        return None if value is None else parse_grace(_scalar(value, "a time span"))


class RawDefaults(_Raw):
    send_at: time = time(9, 0)
    workdays: WorkdayPolicy = "previous"
    audience: str = "staff"
    template: str = "reminder"

    @field_validator("send_at", mode="before")
    @classmethod
    def _time(cls, value: object) -> time:
        return _send_time(value)


class RawFile(_Raw):
    """The file's top level; each item below is validated on its own, so that one bad event
    does not hide the problems of the next one."""

    defaults: RawDefaults = RawDefaults()
    admins: str | list[str] | None = None
    holidays: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    audiences: dict[str, Any] = Field(default_factory=dict)
    events: list[Any] = Field(default_factory=list)
    hooks: list[Any] = Field(default_factory=list)
    channels: dict[str, Any] = Field(default_factory=dict)

    @field_validator("admins", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if value is not None and not ok:
            raise ValueError(
                f"{bounded_repr(value)} is not an audience name or a list of names "
                "(e.g. admins: [admins, ops-group])"
            )
        return value


@dataclass
class ParsedFile:
    path: Path
    defaults: RawDefaults
    admins: str | list[str] | None
    holidays: dict[str, dict[str, list[str]]]
    audiences: dict[str, RawAudience | list[RawRecipient]]
    events: list[tuple[int, RawEvent]]
    hooks: list[tuple[int, RawHook]]
    channels: dict[str, RawChannel] = field(default_factory=dict)


_AUDIENCE = TypeAdapter(RawAudience | list[RawRecipient])


def parse_file(path: Path, data: dict[str, Any], errors: list[str]) -> ParsedFile | None:
    try:
        top = RawFile.model_validate(data)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(path, exc))
        return None
    parsed = ParsedFile(path, top.defaults, top.admins, top.holidays, {}, [], [])
    for name, spec in top.audiences.items():
        try:
            parsed.audiences[name] = _AUDIENCE.validate_python(spec)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(path, exc, ("audiences", name)))
    for i, item in enumerate(top.events):
        try:
            parsed.events.append((i, RawEvent.model_validate(item)))
        except ValidationError as exc:
            errors.extend(_pydantic_errors(path, exc, ("events", i)))
            sound = _without_faulty_reminders(path, i, item, exc, errors)
            if sound is not None:
                parsed.events.append((i, sound))
    for i, item in enumerate(top.hooks):
        try:
            parsed.hooks.append((i, RawHook.model_validate(item)))
        except ValidationError as exc:
            errors.extend(_pydantic_errors(path, exc, ("hooks", i)))
    for name, spec in top.channels.items():
        if not re.match(ID_PATTERN, str(name)) or name == "email":
            errors.append(f"{path}: channels.{name}: a channel id is [a-z0-9-]+ and not 'email'")
            continue
        try:
            parsed.channels[name] = RawChannel.model_validate(spec)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(path, exc, ("channels", name)))
    return parsed


def _without_faulty_reminders(
    path: Path, i: int, item: object, exc: ValidationError, errors: list[str]
) -> RawEvent | None:
    """The event less the reminders `exc` finds fault with, if only reminders are at fault.

    The checks that need a parsed event (`every:` on a one-day event, audiences, ids) then
    still see its other reminders, and the event's own checks run: one bad `before:` hides
    no other error. None if the event's own keys are wrong (its dates are then unknown) or
    no reminder is sound.
    """
    if not isinstance(item, dict):
        return None
    locs = [e["loc"] for e in exc.errors()]
    reminders = item.get("reminders")
    if not isinstance(reminders, list) or not all(
        len(loc) > 1 and loc[0] == "reminders" and isinstance(loc[1], int) for loc in locs
    ):
        return None
    faulty = {loc[1] for loc in locs}
    keep = tuple(j for j in range(len(reminders)) if j not in faulty)
    # With none left, a stand-in reminder lets the event's own checks run (and is dropped).
    sound = [reminders[j] for j in keep] or [{"on": "start"}]
    try:
        event = RawEvent.model_validate({**item, "reminders": sound})
    except ValidationError as again:  # the event's own checks, which the fault kept from running
        errors.extend(_pydantic_errors(path, again, ("events", i)))
        return None
    if not keep:
        return None
    event._positions = keep
    return event


def _clean_message(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


# Tags pydantic adds to a location for a union member or a validated type: "list[...]",
# "function-after[_one_source(), RawAudience]".
_UNION_TAG = re.compile(r"^(list|dict|tuple|function-(after|before|wrap|plain))\[")


def _pydantic_errors(
    path: Path, exc: ValidationError, prefix: tuple[int | str, ...] = ()
) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        # Union members add their type name to the location; it means nothing to a YAML author.
        loc = [
            p
            for p in (*prefix, *err["loc"])
            if not (isinstance(p, str) and (p[:1].isupper() or _UNION_TAG.match(p)))
        ]
        where = yaml_path(loc) or "(file)"
        lines.append(clip(f"{path}: {where}: {_clean_message(err['msg'])}"))
    return sorted(set(lines), key=lines.index)

"""Load `schedules/*.yaml` into one validated `Schedule`, reporting every problem at once.

Each problem names the file, the path inside it and what is wrong, e.g.
``schedules/a.yaml: events[2].reminders[0].before: '7x' is not a duration``.
The loader never raises anything but `ConfigError` for bad input.
"""

from __future__ import annotations

import csv
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import yaml
from email_validator import EmailNotValidError, validate_email
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

from notifier.constants import (
    ERROR_LINE_CHARS,
    ERROR_VALUE_CHARS,
    MAX_CONFIG_ERRORS,
    MAX_CONFIG_FILE_BYTES,
    MAX_YAML_ALIAS_GROWTH,
    MAX_YAML_ALIASES,
)
from notifier.dates.cadence import Cadence, parse_cadence
from notifier.dates.rules import (
    AnnualSpan,
    DateSpec,
    Duration,
    OneOff,
    RRuleSpec,
    WholeMonth,
    lunar_spec,
    month_spec,
    parse_date,
    parse_duration,
    parse_grace,
    rrule_spec,
)
from notifier.dates.workdays import (
    WorkCalendar,
    WorkdayPolicy,
    parse_holiday_tables,
)
from notifier.errors import ConfigError
from notifier.invisible import capped, invisible_problem

ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


class AliasError(yaml.YAMLError):
    """A file whose aliases (`*name`) would cost more than a config can: an "alias bomb"."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.2 booleans: only true/false. YAML 1.1 would read `on:`/`off:` keys as booleans.

    Aliases are bounded (`alias_problem`) before any value is built: PyYAML shares an aliased
    value, but a validator's `str()` or an error message would write every copy out.
    Based on libyaml's CSafeLoader where available: 3x faster on 10,000 events."""

    def __init__(self, stream: str | bytes | IO[str] | IO[bytes]) -> None:
        super().__init__(stream)
        # An alias is written `*name`: text without a `*` has none, and skips the walk (a
        # file object is not read twice: it is walked).
        if isinstance(stream, str):
            self._may_alias = "*" in stream
        elif isinstance(stream, bytes):
            self._may_alias = b"*" in stream
        else:
            self._may_alias = True

    def get_single_node(self) -> yaml.Node | None:
        node: yaml.Node | None = super().get_single_node()
        if node is not None and self._may_alias:
            problem = alias_problem(node)
            if problem is not None:
                raise AliasError(problem)
        return node


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def alias_problem(root: yaml.Node) -> str | None:
    """Why the document's aliases are refused, or None: too many, recursive, or growing it
    past MAX_YAML_ALIAS_GROWTH (text characters plus one per value, each alias counted as
    written out). Walks the shared node graph once, without recursion (libyaml allows 1,000
    levels of nesting, past Python's recursion limit)."""
    size: dict[int, int] = {}  # id(node) -> its size written out, once walked
    open_: set[int] = set()  # collections being walked: met again, an alias of itself
    aliases = written = 0
    stack: list[tuple[yaml.Node, list[yaml.Node] | None]] = [(root, None)]
    while stack:
        node, children = stack.pop()
        key = id(node)
        if children is not None:  # its children are walked
            open_.discard(key)
            written += 1
            size[key] = 1 + sum(size[id(child)] for child in children)
            continue
        if key in size:
            aliases += 1
            continue
        if isinstance(node, yaml.ScalarNode):
            written += 1 + len(node.value)
            size[key] = 1 + len(node.value)
            continue
        if key in open_:
            line = node.start_mark.line + 1 if node.start_mark else 0
            return f"the value anchored on line {line} contains an alias of itself"
        open_.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = list(node.value)
        stack.append((node, children))
        stack.extend((child, None) for child in children)
    if aliases > MAX_YAML_ALIASES:
        return (
            f"{aliases} aliases (*name); at most {MAX_YAML_ALIASES} are allowed in a file "
            "(YAML 别名过多)"
        )
    growth = size[id(root)] - written
    if growth > MAX_YAML_ALIAS_GROWTH:
        shown = f"{growth:,}" if growth < 10**12 else "more than a trillion"
        return (
            f"aliases (*name) would grow the file by {shown} characters and values; at most "
            f"{MAX_YAML_ALIAS_GROWTH:,} are allowed (an alias bomb? 别名展开过大)"
        )
    return None


_SHORT = reprlib.Repr()  # Python 3.11's Repr takes no arguments
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 4, 4
_SHORT.maxstring = _SHORT.maxother = ERROR_VALUE_CHARS


def bounded_repr(value: object) -> str:
    """`repr(value)` for an error message, at most ERROR_VALUE_CHARS (+ "…"); its cost is
    bounded too (reprlib), whatever the value's size."""
    if isinstance(value, str):
        text = repr(value[: ERROR_VALUE_CHARS + 1])
    else:
        text = _SHORT.repr(value)
    return text if len(text) <= ERROR_VALUE_CHARS else text[:ERROR_VALUE_CHARS] + "…"


def clip(line: str, limit: int = ERROR_LINE_CHARS) -> str:
    """One error line, at most `limit` characters (+ "…")."""
    return line if len(line) <= limit else line[:limit] + "…"


def bounded_errors(errors: Sequence[str]) -> list[str]:
    """Error lines clipped, at most MAX_CONFIG_ERRORS of them, then how many more."""
    lines = [clip(line) for line in errors[:MAX_CONFIG_ERRORS]]
    if len(errors) > MAX_CONFIG_ERRORS:
        lines.append(f"... and {len(errors) - MAX_CONFIG_ERRORS} more problems (另有问题未列出)")
    return lines


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


class RawAudience(_Raw):
    csv: str | None = None
    members: list[RawRecipient] | None = None
    external: bool = False
    chat: str | None = Field(default=None, pattern=ID_PATTERN)  # a channel id: one chat group

    @model_validator(mode="after")
    def _one_source(self) -> RawAudience:
        given = [k for k in ("csv", "members", "chat") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an audience needs exactly one of csv, members, chat")
        if self.chat is not None and self.external:
            raise ValueError(
                "external: true is refused for a chat audience (chat groups have no unsubscribe)"
            )
        return self


CHANNEL_TYPES = ("wecom", "dingtalk", "feishu", "webhook")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class RawMention(_Raw):
    mobiles: list[str] = Field(default_factory=list)
    userids: list[str] = Field(default_factory=list)
    all: bool = False


class RawChannel(_Raw):
    """A chat robot or an outbound webhook; URL and secret come from the named variables."""

    type: Literal["wecom", "dingtalk", "feishu", "webhook"]
    url_env: str = Field(pattern=_ENV_NAME)
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


class RawHook(_Raw):
    id: str = Field(pattern=ID_PATTERN, max_length=64)
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    template: str
    audience: str | None = None
    grace: timedelta | None = None

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


def _parse_file(path: Path, data: dict[str, Any], errors: list[str]) -> ParsedFile | None:
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


# --- the validated, resolved schedule ---


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, str]:
        """What templates see as `recipient`: the CSV columns, then name and email."""
        return {**self.fields, "name": self.name or self.email, "email": self.email}


@dataclass(frozen=True, slots=True)
class Audience:
    """Recipients given inline, or a CSV streamed at send time (an audience can be 100,000 rows)."""

    name: str
    external: bool
    members: tuple[Recipient, ...] | None
    csv_path: Path | None
    size: int
    chat: str | None = None  # a channel id: the audience is one chat group, one message a send

    def recipients(self) -> Iterator[Recipient]:
        """The email recipients; none for a chat audience."""
        if self.chat is not None:
            return
        if self.members is not None:
            yield from self.members
            return
        assert self.csv_path is not None
        for _, recipient, _ in read_csv_audience(self.csv_path):
            if recipient is not None:
                yield recipient


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


@dataclass(frozen=True, slots=True)
class Hook:
    id: str
    secret_env: str
    template: str
    audience: str | None
    grace: timedelta | None
    source: Path


@dataclass(frozen=True, slots=True)
class Mention:
    mobiles: tuple[str, ...] = ()
    userids: tuple[str, ...] = ()
    all: bool = False


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """A configured chat robot or outbound webhook (variables named, not read, here)."""

    id: str
    type: Literal["wecom", "dingtalk", "feishu", "webhook"]
    url_env: str
    secret_env: str | None
    mention: Mention
    per_minute: float | None
    per_second: float | None
    timeout: float | None
    concurrency: int | None
    source: Path
    penalty: float | None = None
    form: Literal["card", "post"] = "card"  # feishu: interactive card or post (rich text)


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


def _loc(parts: Sequence[int | str]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


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
        where = _loc(loc) or "(file)"
        lines.append(clip(f"{path}: {where}: {_clean_message(err['msg'])}"))
    return sorted(set(lines), key=lines.index)


NO_EMAIL_COLUMN = "the header row must have an email column"


def read_csv_audience(path: Path) -> Iterator[tuple[int, Recipient | None, str | None]]:
    """Yield (line number, recipient or None, problem or None) for each data row, streaming.

    The line is where the row starts: a quoted field may hold line breaks, and the csv
    module counts the row's last line.
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "email" not in reader.fieldnames:
            yield 1, None, NO_EMAIL_COLUMN
            return
        previous = reader.line_num
        for row in reader:
            end = reader.line_num
            # Rarely more than one line on: a field with line breaks (or blank lines skipped).
            line = end if end - previous == 1 else end - _breaks(row.values())
            previous = end
            if None in row or any(v is None for v in row.values()):
                yield line, None, "wrong number of columns"
                continue
            email = (row.get("email") or "").strip()
            name = (row.get("name") or "").strip()
            problem = check_address(email) or check_name(name)
            if problem:
                yield line, None, problem
                continue
            fields = {k: v for k, v in row.items() if k not in ("email", "name") and k}
            yield line, Recipient(email, name, fields), None


def _breaks(values: Iterable[object]) -> int:
    """Line breaks inside a row's fields (CRLF counts once, as the reader counts lines)."""
    count = 0
    for value in values:
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            count += len(_LINE_BREAK.findall(value))
    return count


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Control characters (all of C0, tab included; DEL; C1) and the Unicode line and paragraph
# separators: none belongs in a name, and CR/LF/NUL would make the To header refused by
# `message.build_message` (the whole row, then, could not be made at send time).
_NAME_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A display name longer than this is a shifted column or a pasted paragraph, not the name
# of a person or a unit (the longest Chinese unit names run to some 40 characters).
MAX_NAME_CHARS = 256


def check_name(name: str) -> str | None:
    """None if `name` can be a recipient's display name, else why not (a line break, another
    control character, over MAX_NAME_CHARS): what the To header would refuse, found before
    anything is sent."""
    bad = _NAME_CONTROL.search(name)
    if bad is not None:
        char = bad.group()
        what = "a line break" if char in "\r\n\u2028\u2029" else f"a control character {char!r}"
        return f"name {name!r} contains {what} (姓名含换行或控制字符)"
    if len(name) > MAX_NAME_CHARS:
        return f"name is {len(name)} characters long, over {MAX_NAME_CHARS} (姓名过长)"
    return None


# A conservative subset of valid addresses (ASCII dot-atom @ LDH labels, alphabetic TLD):
# what matches is valid for email-validator too, and checking it costs 1/50 of a full check,
# which matters for a 100,000-row audience. Anything else gets the full check.
_PLAIN_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


def check_address(email: str) -> str | None:
    """None if `email` is a deliverable-looking address (syntax only: no DNS), else why not."""
    if any(c in email for c in "\r\n"):
        return f"{email!r} contains a line break"
    if len(email) <= 254 and _PLAIN_ADDRESS.match(email) and len(email.partition("@")[0]) <= 64:
        return None
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"{email!r} is not a valid email address: {exc}"
    return None


def read_config_text(path: Path) -> str:
    """A config file's text: at most MAX_CONFIG_FILE_BYTES, UTF-8 (a leading BOM, which
    Windows editors write, is dropped). ValueError says what is wrong; OSError propagates."""
    with path.open("rb") as handle:
        data = handle.read(MAX_CONFIG_FILE_BYTES + 1)
    if len(data) > MAX_CONFIG_FILE_BYTES:
        raise ValueError(
            f"larger than {MAX_CONFIG_FILE_BYTES // 1024} KiB: split it into several files "
            "(文件过大，请拆分)"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}): save it as UTF-8 "
            "(文件不是 UTF-8 编码，请另存为 UTF-8)"
        ) from None


def invisible_in_data(path: Path, data: object) -> list[str]:
    """Warnings for each string (key or value) of a file's data that hides characters."""

    def walk() -> Iterator[str]:
        stack: list[tuple[tuple[int | str, ...], object]] = [((), data)]
        while stack:
            loc, value = stack.pop()
            if isinstance(value, str):
                problem = invisible_problem(value)
                if problem:
                    yield f"{path}: {_loc(loc) or '(file)'}: {problem}"
            elif isinstance(value, list):
                stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))
            elif isinstance(value, dict):
                for key in value:
                    problem = invisible_problem(key) if isinstance(key, str) else None
                    if problem:
                        yield f"{path}: {_loc((*loc, key))} (the key): {problem}"
                stack.extend(((*loc, str(k)), v) for k, v in reversed(list(value.items())))

    return capped(path, walk())


def _read_yaml(path: Path, errors: list[str]) -> Any:
    try:
        text = read_config_text(path)
    except OSError as exc:
        errors.append(f"{path}: cannot read: {exc}")
        return None
    except ValueError as exc:
        errors.append(f"{path}: (file): {exc}")
        return None
    try:
        return yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(clip(f"{path}: {where}: invalid YAML: {problem}"))
        return None


def load_schedule(directory: Path) -> Schedule:
    """Read and merge every `*.yaml` under `directory`; raise ConfigError listing all problems."""
    errors: list[str] = []
    warnings: list[str] = []
    if not directory.is_dir():
        raise ConfigError([f"{directory}: schedules directory not found"])
    files = sorted(p for p in directory.rglob("*.yaml") if p.is_file())
    files += sorted(p for p in directory.rglob("*.yml") if p.is_file())
    parsed: list[ParsedFile] = []
    for path in files:
        data = _read_yaml(path, errors)
        if data is None:
            continue
        if not isinstance(data, dict):
            errors.append(f"{path}: (file): expected a mapping at the top level")
            continue
        warnings.extend(invisible_in_data(path, data))
        one = _parse_file(path, data, errors)
        if one is not None:
            parsed.append(one)

    tables: dict[int, dict[date, bool]] = {}
    holiday_files: dict[int, Path] = {}
    audiences: dict[str, Audience] = {}
    audience_origin: dict[str, Path] = {}
    channels = _build_channels(parsed, errors)
    for raw in parsed:
        path = raw.path
        if raw.holidays:
            try:
                file_tables = parse_holiday_tables(raw.holidays)
            except ValueError as exc:
                errors.append(f"{path}: holidays: {exc}")
            else:
                for year in sorted(file_tables.keys() & holiday_files.keys()):
                    errors.append(
                        f"{path}: holidays.{year}: the {year} table is given again (first in "
                        f"{holiday_files[year]}); keep one table per year (每年只保留一张表)"
                    )
                for year, days in file_tables.items():
                    tables.setdefault(year, days)
                holiday_files.update({y: path for y in file_tables if y not in holiday_files})
        for name, spec in raw.audiences.items():
            if name in audiences:
                errors.append(
                    f"{path}: audiences.{name}: defined again (first in {audience_origin[name]})"
                )
                continue
            audience = _build_audience(path, directory, name, spec, errors, warnings)
            if audience is not None and audience.chat is not None:
                if audience.chat not in channels:
                    errors.append(
                        f"{path}: audiences.{name}.chat: unknown channel '{audience.chat}'"
                    )
            if audience is not None:
                audiences[name] = audience
                audience_origin[name] = path

    events: dict[str, Event] = {}
    hooks: dict[str, Hook] = {}
    for raw in parsed:
        path, d = raw.path, raw.defaults
        for i, ev in raw.events:
            where = f"{path}: events[{i}]"
            if ev.id in events:
                errors.append(
                    f"{where}.id: '{ev.id}' is defined again (first in {events[ev.id].source})"
                )
                continue
            reminders: list[Reminder] = []
            seen: set[str] = set()
            for j, rem in ev.numbered_reminders():
                kind, value = _trigger(rem)
                rid = rem.id or _reminder_id(kind, value, rem.every)
                if rem.every is not None and not _has_span(ev.specs()):
                    errors.append(
                        f"{where}.reminders[{j}].every: the event's dates are single days; "
                        "every: needs a span such as a week or a month (use on: start) "
                        "(单日事件不能按周期发送，请改用 on: start)"
                    )
                    continue
                if rid in seen:
                    errors.append(f"{where}.reminders[{j}].id: '{rid}' is used twice in this event")
                    continue
                seen.add(rid)
                if rid in rem.replaces:
                    errors.append(f"{where}.reminders[{j}].replaces: '{rid}' is its own id")
                    continue
                names = _audience_names(rem.audience or ev.audience or d.audience)
                if not names:
                    errors.append(f"{where}.reminders[{j}].audience: an empty list of audiences")
                    continue
                reminder = Reminder(
                    id=rid,
                    kind=kind,
                    value=value,
                    send_at=rem.send_at or ev.send_at or d.send_at,
                    workdays=rem.workdays or ev.workdays or d.workdays,
                    audience=names[0],
                    template=rem.template or ev.template or d.template,
                    every=rem.every,
                    audiences=names if len(names) > 1 else (),
                    replaces=tuple(rem.replaces),
                )
                for name in names:
                    if name not in audiences:
                        key = "audience" if (rem.audience or ev.audience) else "defaults.audience"
                        errors.append(f"{where}.reminders[{j}]: unknown audience '{name}' ({key})")
                reminders.append(reminder)
            events[ev.id] = Event(
                id=ev.id,
                title=ev.title,
                description=ev.description,
                specs=tuple(ev.specs()),
                reminders=tuple(reminders),
                grace=ev.grace,
                vars=dict(ev.vars),
                source=path,
            )
        for i, hk in raw.hooks:
            where = f"{path}: hooks[{i}]"
            if hk.id in hooks:
                errors.append(f"{where}.id: '{hk.id}' is defined again")
                continue
            if hk.audience is not None and hk.audience not in audiences:
                errors.append(f"{where}.audience: unknown audience '{hk.audience}'")
            elif hk.audience is not None and audiences[hk.audience].chat is not None:
                errors.append(f"{where}.audience: a hook sends email; '{hk.audience}' is a chat")
            hooks[hk.id] = Hook(hk.id, hk.secret_env, hk.template, hk.audience, hk.grace, path)

    admins = _admins(parsed, audiences, errors)
    if errors:
        raise ConfigError(bounded_errors(errors))
    warnings.extend(_december_overrides(tables, holiday_files))
    calendar = WorkCalendar(tables=tables)
    return Schedule(
        events=events,
        audiences=audiences,
        hooks=hooks,
        calendar=calendar,
        files=tuple(files),
        warnings=tuple(warnings),
        admins=admins,
        channels=channels,
        holiday_files=holiday_files,
    )


def _december_overrides(
    tables: Mapping[int, Mapping[date, bool]], files: Mapping[int, Path]
) -> list[str]:
    """A day of December N-1 that the table of N sets the other way from N-1's own table: the
    table of N wins (the notice for N sets it), said so that nobody wonders."""
    out: list[str] = []
    for year, days in sorted(tables.items()):
        before = tables.get(year - 1, {})
        for day, work in sorted(days.items()):
            if day.year == year - 1 and before.get(day, work) != work:
                out.append(
                    f"{files[year]}: holidays.{year}: {day} is {'work' if work else 'off'}, "
                    f"{'off' if work else 'work'} in the {year - 1} table ({files[year - 1]}); "
                    f"the {year} table wins: the notice for {year} sets it "
                    f"（{year}年通知设定的日期覆盖{year - 1}年表）"
                )
    return out


def _admins(
    parsed: list[ParsedFile], audiences: Mapping[str, Audience], errors: list[str]
) -> tuple[str, ...]:
    """The `admins:` audiences (a name or a list of names, email or chat), as the files say.

    Several files may say it, but they must say the same.
    """
    named: list[tuple[Path, tuple[str, ...]]] = []
    for raw in parsed:
        if raw.admins is None:
            continue
        names = _audience_names(raw.admins)
        if not names:
            errors.append(f"{raw.path}: admins: an empty list of audiences")
            continue
        given = [raw.admins] if isinstance(raw.admins, str) else raw.admins
        for i, name in enumerate(given):
            if name not in audiences:
                where = "admins" if isinstance(raw.admins, str) else f"admins[{i}]"
                errors.append(f"{raw.path}: {where}: unknown audience '{name}'")
        named.append((raw.path, names))
    if len({names for _, names in named}) > 1:
        errors.append(
            "admins: named differently in "
            + ", ".join(f"{path} ({', '.join(names)})" for path, names in named)
        )
    return named[0][1] if named else ()


def _has_span(specs: Sequence[DateSpec]) -> bool:
    """True if some occurrence of these specs can last more than one day."""
    for spec in specs:
        if isinstance(spec, AnnualSpan | WholeMonth):
            return True
        if isinstance(spec, OneOff) and spec.end > spec.start:
            return True
        if isinstance(spec, RRuleSpec) and spec.duration_days > 1:
            return True
    return False


def _audience_names(value: str | list[str]) -> tuple[str, ...]:
    """An audience name or a list of names, in order, each once."""
    return tuple(dict.fromkeys([value] if isinstance(value, str) else value))


def _build_channels(parsed: Sequence[ParsedFile], errors: list[str]) -> dict[str, ChannelSpec]:
    channels: dict[str, ChannelSpec] = {}
    for raw in parsed:
        for name, ch in raw.channels.items():
            if name in channels:
                errors.append(
                    f"{raw.path}: channels.{name}: defined again (first in {channels[name].source})"
                )
                continue
            m = ch.mention or RawMention()
            channels[name] = ChannelSpec(
                id=name,
                type=ch.type,
                url_env=ch.url_env,
                secret_env=ch.secret_env,
                mention=Mention(tuple(m.mobiles), tuple(m.userids), m.all),
                per_minute=ch.per_minute,
                per_second=ch.per_second,
                timeout=ch.timeout,
                concurrency=ch.concurrency,
                source=raw.path,
                penalty=ch.penalty,
                form=ch.form or "card",
            )
    return channels


def _trigger(
    rem: RawReminder,
) -> tuple[Literal["before", "on", "after"], Duration | Literal["start", "end"]]:
    if rem.before is not None:
        return "before", rem.before
    if rem.after is not None:
        return "after", rem.after
    if rem.every is not None:
        return "on", "start"
    assert rem.on is not None
    return "on", rem.on


def _reminder_id(kind: str, value: Duration | str, every: Cadence | None = None) -> str:
    if every is not None:
        return f"every-{every.slug}"
    if isinstance(value, str):
        return f"on-{value}"
    unit = {"days": "d", "weeks": "w", "workdays": "wd"}[value.unit]
    return f"{kind}-{value.n}{unit}"


def _build_audience(
    path: Path,
    directory: Path,
    name: str,
    spec: RawAudience | list[RawRecipient],
    errors: list[str],
    warnings: list[str],
) -> Audience | None:
    where = f"{path}: audiences.{name}"
    if isinstance(spec, list):
        spec = RawAudience(members=spec)
    if spec.chat is not None:
        return Audience(name, False, (), None, 1, chat=spec.chat)
    if spec.members is not None:
        members: list[Recipient] = []
        for i, m in enumerate(spec.members):
            problem = check_address(m.email)
            if problem:
                errors.append(f"{where}[{i}].email: {problem}")
                continue
            problem = check_name(m.name)
            if problem:
                # Kept, as before: its own row fails at send time, the others go out.
                warnings.append(f"{where}[{i}].name: {problem}")
            extra = {k: str(v) for k, v in (m.model_extra or {}).items()}
            members.append(Recipient(m.email, m.name, extra))
        return Audience(name, spec.external, tuple(members), None, len(members))
    assert spec.csv is not None
    csv_path = (directory / spec.csv).resolve()
    if not csv_path.is_relative_to(directory.resolve()):
        # An absolute path, `..` or a link out: a schedule file must not read (and mail to)
        # whatever file the service user can read.
        errors.append(
            f"{where}.csv: {bounded_repr(spec.csv)} is outside the schedules directory "
            f"({csv_path}); keep audience files under {directory} (受众文件须在日程目录内)"
        )
        return None
    if not csv_path.is_file():
        errors.append(f"{where}.csv: file not found: {csv_path}")
        return None
    size = 0
    try:
        for line, recipient, problem in read_csv_audience(csv_path):
            if recipient is not None:
                size += 1
            elif problem == NO_EMAIL_COLUMN:
                errors.append(f"{where}.csv: {csv_path}: line 1: {problem}")
                return None
            else:
                # Bad rows are reported and skipped; the good ones are kept.
                warnings.append(f"{csv_path}: line {line}: {problem} (row skipped)")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        errors.append(f"{where}.csv: cannot read {csv_path}: {exc}")
        return None
    return Audience(name, spec.external, None, csv_path, size)

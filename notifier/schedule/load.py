"""Load `schedules/*.yaml` into one validated `Schedule`, reporting every problem at once.

Each problem names the file, the path inside it and what is wrong, e.g.
``schedules/a.yaml: events[2].reminders[0].before: '7x' is not a duration``.
The loader never raises anything but `ConfigError` for bad input.
"""

from __future__ import annotations

import csv
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from notifier.dates.cadence import Cadence
from notifier.dates.rules import (
    AnnualSpan,
    DateSpec,
    Duration,
    OneOff,
    RRuleSpec,
    WholeMonth,
)
from notifier.dates.workdays import (
    WorkCalendar,
    parse_holiday_tables,
)
from notifier.errors import ConfigError
from notifier.schedule.files import bounded_errors, bounded_repr, invisible_in_data, read_yaml
from notifier.schedule.model import (
    Attachment,
    Audience,
    BounceSpec,
    ChannelSpec,
    Event,
    Hook,
    Mention,
    Reminder,
    Schedule,
    SmtpSpec,
)
from notifier.schedule.raw import (
    ParsedFile,
    RawAudience,
    RawChannel,
    RawMention,
    RawRecipient,
    RawReminder,
    parse_file,
)
from notifier.schedule.recipients import Recipient, check_address, check_name
from notifier.schedule.sheets import AudienceFileError, Columns, read_audience


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
        data = read_yaml(path, errors)
        if data is None:
            continue
        if not isinstance(data, dict):
            errors.append(f"{path}: (file): expected a mapping at the top level")
            continue
        warnings.extend(invisible_in_data(path, data))
        one = parse_file(path, data, errors)
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
                elif channels[audience.chat].type == "smtp":
                    errors.append(
                        f"{path}: audiences.{name}.chat: '{audience.chat}' is a mail channel "
                        "(type smtp): name it in channel, with members or csv"
                    )
            if audience is not None and audience.mail_channel is not None:
                mail = channels.get(audience.mail_channel)
                if mail is None or mail.type != "smtp":
                    what = "unknown channel" if mail is None else f"a {mail.type} channel"
                    errors.append(
                        f"{path}: audiences.{name}.channel: '{audience.mail_channel}' is "
                        f"{what}, not a mail channel (type smtp)"
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
            event_files = _attachments(directory, f"{where}.attachments", ev.attachments, errors)
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
                    attachments=event_files
                    + _attachments(
                        directory, f"{where}.reminders[{j}].attachments", rem.attachments, errors
                    ),
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
                attachments=event_files,
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
            hook_files = _attachments(directory, f"{where}.attachments", hk.attachments, errors)
            hooks[hk.id] = Hook(
                hk.id, hk.secret_env, hk.template, hk.audience, hk.grace, path, hook_files
            )

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
                url_env=ch.url_env or "",
                secret_env=ch.secret_env,
                mention=Mention(tuple(m.mobiles), tuple(m.userids), m.all),
                per_minute=ch.per_minute,
                per_second=ch.per_second,
                timeout=ch.timeout,
                concurrency=ch.concurrency,
                source=raw.path,
                penalty=ch.penalty,
                form=ch.form or "card",
                smtp=_smtp_spec(ch),
            )
    return channels


def _smtp_spec(ch: RawChannel) -> SmtpSpec | None:
    """A mail channel's account, the settings' defaults where the file says nothing."""
    if ch.type != "smtp":
        return None
    assert ch.host_env is not None and ch.mail_from is not None  # RawChannel checked
    base = SmtpSpec(host_env=ch.host_env, mail_from=ch.mail_from)
    return replace(
        base,
        port=ch.port or base.port,
        security=ch.security or base.security,
        username_env=ch.username_env,
        password_env=ch.password_env,
        pool_size=ch.pool_size or base.pool_size,
        allow_plain_auth=bool(ch.allow_plain_auth),
        timeout=ch.timeout or base.timeout,
        limits=ch.limits or "",
        bounces=_bounce_spec(ch),
    )


def _bounce_spec(ch: RawChannel) -> BounceSpec | None:
    if ch.bounces is None:
        return None
    b = ch.bounces
    base = BounceSpec(imap_url=b.imap_url, imap_password_env=b.imap_password_env)
    return replace(
        base,
        poll_seconds=b.poll_seconds or base.poll_seconds,
        processed_folder=b.processed_folder or base.processed_folder,
    )


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


def _attachments(
    directory: Path, where: str, names: Sequence[str], errors: list[str]
) -> tuple[Attachment, ...]:
    """The files named, each checked: inside the schedules directory, a regular file, and
    readable now (what cannot be read is an error naming it, never a message without it)."""
    found: list[Attachment] = []
    for i, name in enumerate(names):
        path = (directory / name).resolve()
        at = f"{where}[{i}]"
        if not path.is_relative_to(directory.resolve()):
            errors.append(
                f"{at}: {bounded_repr(name)} is outside the schedules directory ({path}); "
                f"keep attachments under {directory} (附件须在日程目录内)"
            )
            continue
        try:
            with path.open("rb") as handle:
                handle.read(1)
            size = path.stat().st_size
        except OSError as exc:
            errors.append(f"{at}: cannot read {path}: {exc.strerror or exc} (附件无法读取)")
            continue
        if not path.is_file():
            errors.append(f"{at}: {path} is not a file")
            continue
        if len(quote(path.name, safe="")) > MAX_ENCODED_NAME:
            # filename*= stays on one line (continuations show as tcmime.*.bin in QQ Mail).
            errors.append(f"{at}: the file name {path.name!r} is too long for a mail header")
            continue
        found.append(Attachment(path, mime_type(path), size))
    return tuple(found)


# An attachment's name percent-encoded, at most: `filename*=utf-8''NAME` on one line within
# RFC 5322's 998 characters (some 100 Chinese characters).
MAX_ENCODED_NAME = 960
# The office's own kinds first: the system's mime.types may lack them (Debian's has no .wps).
OFFICE_TYPES = {
    ".pdf": "application/pdf",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xls": "application/vnd.ms-excel",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".ppt": "application/vnd.ms-powerpoint",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".wps": "application/vnd.ms-works",
    ".ofd": "application/ofd",  # China's fixed-layout format (GB/T 33190)
    ".zip": "application/zip",
    ".txt": "text/plain",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


def mime_type(path: Path) -> str:
    """The MIME type by the file's suffix (what mail clients go by), octet-stream else."""
    known = OFFICE_TYPES.get(path.suffix.lower())
    if known:
        return known
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed or "application/octet-stream"


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
        return Audience(
            name, spec.external, tuple(members), None, len(members), mail_channel=spec.channel
        )
    file = spec.csv if spec.csv is not None else spec.xlsx
    key = "csv" if spec.csv is not None else "xlsx"
    assert file is not None
    csv_path = (directory / file).resolve()
    if not csv_path.is_relative_to(directory.resolve()):
        # An absolute path, `..` or a link out: a schedule file must not read (and mail to)
        # whatever file the service user can read.
        errors.append(
            f"{where}.{key}: {bounded_repr(file)} is outside the schedules directory "
            f"({csv_path}); keep audience files under {directory} (受众文件须在日程目录内)"
        )
        return None
    if not csv_path.is_file():
        errors.append(f"{where}.{key}: file not found: {csv_path}")
        return None
    columns = Columns(spec.columns.email, spec.columns.name) if spec.columns else Columns()
    # CSV rows are named by the line they start on; a workbook's by Excel's row number.
    unit = "row" if key == "xlsx" else "line"
    size = 0
    try:
        for line, recipient, problem in read_audience(csv_path, sheet=spec.sheet, columns=columns):
            if recipient is not None:
                size += 1
            else:
                # Bad rows are reported and skipped; the good ones are kept.
                warnings.append(f"{csv_path}: {unit} {line}: {problem} (row skipped)")
    except AudienceFileError as exc:
        errors.append(f"{where}.{key}: {csv_path}: {exc}")
        return None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        errors.append(f"{where}.{key}: cannot read {csv_path}: {exc}")
        return None
    return Audience(
        name,
        spec.external,
        None,
        csv_path,
        size,
        sheet=spec.sheet,
        columns=columns,
        mail_channel=spec.channel,
    )

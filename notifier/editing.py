"""Editing the calendar from the console: a draft of the changed file, its check (the same
`load_config` as `notifier check`, on a copy of the schedules directory), the send days it
gives over the next 400 days, and how they differ from the running schedule's.

The App's use cases (save_event, delete_event) put a checked draft in place; this module
changes nothing on disk.
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from notifier.checks import load_config
from notifier.config import Settings
from notifier.errors import ConfigError, NotifierError
from notifier.schedule.describe import move_reason
from notifier.schedule.edit import (
    CONSOLE_FILE,
    EditError,
    event_text,
    file_hash,
    find_event,
    inserted,
    replaced,
    safe_target,
    trial_copy,
)
from notifier.schedule.files import load_yaml_text
from notifier.schedule.model import Event, Schedule
from notifier.schedule.planner import PlannedSend, plan_event
from notifier.schedule.sheets import WORKBOOK_SUFFIXES

# The preview's reach: a year and some, as `check` looks ahead for missing workday data.
PREVIEW_DAYS = 400


@dataclass(frozen=True, slots=True)
class Draft:
    """One event created, changed or deleted: the file's text before and after."""

    path: Path
    old_id: str | None  # None: a new event
    new_id: str | None  # None: deleted
    before: str  # "" for a new file
    after: str
    old_event: dict[str, Any] | None
    new_event: dict[str, Any] | None
    new_file: bool = False
    # A workbook's bytes, new and old: `before` and `after` are then its rows as text (the
    # version's record and diff), and these are what is written and restored.
    data: bytes | None = None
    old_data: bytes | None = None

    @property
    def diff(self) -> str:
        return unified_diff(self.before, self.after, str(self.path))

    @property
    def written(self) -> str | bytes:
        """What the file will hold."""
        return self.after if self.data is None else self.data

    @property
    def restored(self) -> str | bytes:
        """What the file held (put back when the reload refuses the change)."""
        return self.before if self.old_data is None else self.old_data


@dataclass(frozen=True, slots=True)
class SendRow:
    event: str
    at: datetime
    occurrence: date
    reminder: str
    label: str
    audience: str
    provisional: bool
    reason: str | None
    # The files the send carries (the event's, then the reminder's own): name and bytes.
    attachments: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SendChange:
    change: Literal["added", "moved", "removed"]
    event: str
    occurrence: date
    reminder: str
    label: str
    old: datetime | None
    new: datetime | None
    reason: str | None


@dataclass
class EditPreview:
    draft: Draft
    errors: list[str]
    warnings: list[str] = field(default_factory=list)
    sends: list[SendRow] = field(default_factory=list)
    changes: list[SendChange] = field(default_factory=list)
    # The edited event's index in its file's `events:` (where check's errors point).
    index: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


class EditConflict(NotifierError):
    """The event changed since the page was loaded: the save is refused, never merged."""

    def __init__(self, event_id: str, base: str, current: str) -> None:
        super().__init__(f"event '{event_id}' changed since the form was loaded")
        self.event_id = event_id
        self.base = base
        self.current = current
        self.diff = unified_diff(base, current, event_id)


class EditRefused(NotifierError):
    """The change does not pass the check (or the reload): nothing was written or kept."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors[:3]))
        self.errors = errors


def unified_diff(before: str, after: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
    )


def current_event(schedule: Schedule, event_id: str) -> tuple[Path, dict[str, Any]]:
    """The file an event lives in and its mapping as written there; EditError if gone."""
    event = schedule.events.get(event_id)
    if event is None:
        raise EditError(f"no event '{event_id}'")
    path = event.source
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EditError(f"{path}: cannot read: {exc.strerror}") from None
    found = find_event(text, event_id, path)
    if found is None:
        raise EditError(f"{path}: no event '{event_id}' in this file (edited meanwhile?)")
    return path, found[1]


def draft(
    settings: Settings,
    schedule: Schedule,
    old_id: str | None,
    new: Mapping[str, Any] | None,
    *,
    file: str | None = None,
) -> Draft:
    """The changed file's text; EditError if the file cannot take the change."""
    directory = settings.schedules_dir
    if old_id is None:
        assert new is not None
        path = safe_target(directory, Path(file or CONSOLE_FILE))
        exists = path.exists()
        before = path.read_text(encoding="utf-8") if exists else ""
        after = inserted(before, new, path)
        return Draft(path, None, str(new.get("id")), before, after, None, dict(new), not exists)
    path, old = current_event(schedule, old_id)
    before = path.read_text(encoding="utf-8")
    after = replaced(before, old_id, new, path)
    new_id = None if new is None else str(new.get("id"))
    return Draft(path, old_id, new_id, before, after, old, None if new is None else dict(new))


def check_conflict(d: Draft, base: str | None) -> None:
    """Raise EditConflict when the event is no longer what the form was made from."""
    if d.old_id is None or base is None:
        return
    current = event_text(d.old_event)
    if current != base:
        raise EditConflict(d.old_id, base, current)


def check(
    settings: Settings, d: Draft, *, now: datetime
) -> tuple[Schedule | None, list[str], list[str]]:
    """`notifier check` on the schedules directory as the draft would leave it: the new
    schedule (None if refused), the errors and the warnings, in check's words."""
    directory = settings.schedules_dir
    with trial_copy(directory, {d.path: d.written}) as copy:
        trial = settings.model_copy(update={"schedules_dir": copy})
        try:
            schedule, _, warnings = load_config(trial, now=now)
        except ConfigError as exc:
            return None, [_real(e, copy, directory) for e in exc.errors], []
        return schedule, [], [_real(w, copy, directory) for w in warnings]


def _real(line: str, copy: Path, directory: Path) -> str:
    return line.replace(str(copy), str(directory))


def preview(settings: Settings, schedule: Schedule, d: Draft, *, now: datetime) -> EditPreview:
    """The check's verdict, the edited events' sends over PREVIEW_DAYS and what changes (a
    draft of one event: that event; of a whole file, a revert: the events that differ)."""
    trial, errors, warnings = check(settings, d, now=now)
    if trial is None:
        return EditPreview(d, errors)
    until = now + timedelta(days=PREVIEW_DAYS)
    if d.old_id is None and d.new_id is None:
        ids: tuple[str, ...] = changed_events(d.before, d.after)
    else:
        ids = tuple(i for i in (d.old_id, d.new_id) if i)
    old: list[PlannedSend] = []
    new: list[PlannedSend] = []
    for i in dict.fromkeys(ids):
        old += _sends(schedule.events.get(i), schedule, now, until, settings)
        new += _sends(trial.events.get(i), trial, now, until, settings)
    new.sort(key=lambda p: (p.send_at, p.event.id, p.reminder.id))
    return EditPreview(
        d,
        [],
        warnings=warnings,
        sends=[_row(p, trial) for p in new],
        changes=_compare(old, new, schedule, trial),
    )


def _sends(
    event: Event | None, schedule: Schedule, now: datetime, until: datetime, settings: Settings
) -> list[PlannedSend]:
    if event is None:
        return []
    sends = plan_event(event, schedule, now, until, settings.tz)
    sends.sort(key=lambda p: (p.send_at, p.reminder.id))
    return sends


def _row(p: PlannedSend, schedule: Schedule) -> SendRow:
    return SendRow(
        event=p.event.id,
        at=p.send_at,
        occurrence=p.occurrence.start,
        reminder=p.reminder.id,
        label=p.reminder.label,
        audience=", ".join(p.reminder.all_audiences),
        provisional=p.provisional,
        reason=move_reason(p.occurrence, p.reminder, p.send_date, schedule.calendar),
        attachments=tuple((a.path.name, a.size) for a in p.reminder.attachments),
    )


def _compare(
    old: list[PlannedSend], new: list[PlannedSend], before: Schedule, after: Schedule
) -> list[SendChange]:
    """Sends matched by event, the occurrence's rank in the window, reminder id and place in
    a series: a changed date moves the sends of its occurrences rather than replacing them."""

    def keyed(sends: list[PlannedSend]) -> dict[tuple[str, date, str, int], PlannedSend]:
        starts: dict[str, list[date]] = {}
        for p in sends:
            starts.setdefault(p.event.id, []).append(p.occurrence.start)
        rank = {
            (ev, start): n
            for ev, days in starts.items()
            for n, start in enumerate(sorted(set(days)))
        }
        out: dict[tuple[str, date, str, int], PlannedSend] = {}
        for p in sends:
            n = rank[(p.event.id, p.occurrence.start)]
            out[(p.event.id, date.min + timedelta(days=n), p.reminder.id, p.index)] = p
        return out

    was, now = keyed(old), keyed(new)
    out: list[SendChange] = []
    for key, p in now.items():
        q = was.get(key)
        reason = move_reason(p.occurrence, p.reminder, p.send_date, after.calendar)
        if q is None:
            out.append(
                SendChange(
                    "added",
                    key[0],
                    p.occurrence.start,
                    key[2],
                    p.reminder.label,
                    None,
                    p.send_at,
                    reason,
                )
            )
        elif q.send_at != p.send_at:
            out.append(
                SendChange(
                    "moved",
                    key[0],
                    p.occurrence.start,
                    key[2],
                    p.reminder.label,
                    q.send_at,
                    p.send_at,
                    reason,
                )
            )
    for key, q in was.items():
        if key not in now:
            reason = move_reason(q.occurrence, q.reminder, q.send_date, before.calendar)
            out.append(
                SendChange(
                    "removed",
                    key[0],
                    q.occurrence.start,
                    key[2],
                    q.reminder.label,
                    q.send_at,
                    None,
                    reason,
                )
            )
    out.sort(key=lambda c: (c.new or c.old, c.reminder))
    return out


@dataclass(frozen=True, slots=True)
class Who:
    """Who saved: the console's role and client address (or the reload, for hand edits)."""

    role: str
    client: str


# The reload's name in the history for changes made outside the console.
OUTSIDE = Who("outside", "")


def relative(directory: Path, path: Path) -> str:
    """A schedule file's name in the history: its path under the schedules directory."""
    try:
        return path.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:
        return path.name


def event_texts(text: str) -> dict[str, str]:
    """Each event's YAML in a file's text, by id (nothing if the text is not valid YAML)."""
    try:
        data = load_yaml_text(text) if text.strip() else {}
    except yaml.YAMLError:
        return {}
    events = data.get("events") if isinstance(data, dict) else None
    out: dict[str, str] = {}
    for item in events if isinstance(events, list) else []:
        if isinstance(item, dict) and "id" in item:
            out[str(item["id"])] = event_text(item)
    return out


def changed_events(before: str, after: str) -> tuple[str, ...]:
    """The ids of the events whose YAML differs between two texts of a file."""
    old, new = event_texts(before), event_texts(after)
    return tuple(sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)))


def schedule_files(directory: Path) -> list[Path]:
    """The files the loader reads (and the history follows)."""
    found = [p for p in directory.rglob("*.yaml") if p.is_file()]
    found += [p for p in directory.rglob("*.yml") if p.is_file()]
    return sorted(found)


def revert_draft(settings: Settings, path: Path, content: str) -> Draft:
    """The file made to say `content` again (a version's text)."""
    target = safe_target(settings.schedules_dir, path)
    if target.suffix.lower() in WORKBOOK_SUFFIXES:
        # Its versions keep its rows as text, a record: the workbook is uploaded again.
        raise EditError(
            f"{target}: a workbook's history is a record of its rows and cannot be restored "
            "here; upload the workbook again (Excel 名单请重新上传)"
        )
    exists = target.exists()
    before = target.read_text(encoding="utf-8") if exists else ""
    return Draft(target, None, None, before, content, None, None, not exists)


# --- the quick preview: one event checked against the rest of the schedule -----------------

# Parsed schedule files by their text's hash: a preview reads every file, and parsing the
# 1,000-event benchmark file costs ~1 s; an unchanged file is parsed once.
_PARSED: dict[str, Any] = {}
MAX_PARSED = 64


def parsed_yaml(text: str) -> Any:
    key = file_hash(text)
    if key not in _PARSED:
        if len(_PARSED) >= MAX_PARSED:
            _PARSED.clear()
        try:
            _PARSED[key] = load_yaml_text(text) if text.strip() else {}
        except yaml.YAMLError:
            _PARSED[key] = None
    return _PARSED[key]


def quick_preview(
    settings: Settings,
    schedule: Schedule,
    old_id: str | None,
    new: Mapping[str, Any] | None,
    *,
    file: str | None = None,
    now: datetime,
) -> EditPreview:
    """What saving one event would do, in the console's time budget (p95 <= 300 ms on the
    1,000-event benchmark): `check` (load_config) runs on a copy of the schedules directory
    holding every file's audiences, defaults, channels and tables but only the edited event,
    so its errors are check's own words about that event; the id's uniqueness is checked
    against the running schedule. The save runs the full check on the whole directory.
    EditError if the file cannot take the change."""
    directory = settings.schedules_dir
    if old_id is None:
        assert new is not None
        path = safe_target(directory, Path(file or CONSOLE_FILE))
        exists = path.exists()
        text = path.read_text(encoding="utf-8") if exists else ""
        data = parsed_yaml(text)
        if not isinstance(data, dict):
            raise EditError(f"{path}: (file): expected a mapping at the top level")
        index = len(data.get("events") or [])
        old = None
    else:
        event = schedule.events.get(old_id)
        if event is None:
            raise EditError(f"no event '{old_id}'")
        path, exists = event.source, True
        text = path.read_text(encoding="utf-8")
        data = parsed_yaml(text)
        events = data.get("events") if isinstance(data, dict) else None
        found = [
            i
            for i, item in enumerate(events if isinstance(events, list) else [])
            if isinstance(item, dict) and str(item.get("id")) == old_id
        ]
        if not found:
            raise EditError(f"{path}: no event '{old_id}' in this file (edited meanwhile?)")
        index = found[0]
        old = events[index]  # type: ignore[index]
    new_id = None if new is None else str(new.get("id"))
    d = Draft(
        path,
        old_id,
        new_id,
        event_text(old),
        event_text(new),
        None if old is None else dict(old),
        None if new is None else dict(new),
        not exists,
    )
    errors: list[str] = []
    trial: Schedule | None = None
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="notifier-preview-") as tmp:
        copy = Path(tmp) / "schedules"
        shutil.copytree(
            directory, copy, symlinks=True, ignore=shutil.ignore_patterns("*.yaml", "*.yml")
        )
        files = set(schedule_files(directory)) | {path}
        for f in files:
            target = copy / relative(directory, f)
            target.parent.mkdir(parents=True, exist_ok=True)
            content = text if f == path else f.read_text(encoding="utf-8")
            parsed = data if f == path else parsed_yaml(content)
            if not isinstance(parsed, dict):
                target.write_text(content, encoding="utf-8")  # the loader says what is wrong
                continue
            skeleton = {k: v for k, v in parsed.items() if k not in ("events", "hooks")}
            if f == path and new is not None:
                skeleton["events"] = [dict(new)]
            target.write_text(
                yaml.safe_dump(skeleton, allow_unicode=True, sort_keys=False), encoding="utf-8"
            )
        trial_settings = settings.model_copy(update={"schedules_dir": copy})
        edited = str(copy / relative(directory, path))
        try:
            trial, _, warnings = load_config(trial_settings, now=now)
        except ConfigError as exc:
            errors = [
                _real(line.replace(f"{edited}: events[0]", f"{edited}: events[{index}]"), copy,
                      directory)
                for line in exc.errors
            ]  # fmt: skip
        warnings = [_real(w, copy, directory) for w in warnings]
    if new_id is not None and new_id != old_id and new_id in schedule.events:
        errors.append(
            f"{path}: events[{index}].id: '{new_id}' is defined again "
            f"(first in {schedule.events[new_id].source})"
        )
    if trial is None or errors:
        return EditPreview(d, errors, index=index)
    until = now + timedelta(days=PREVIEW_DAYS)
    old_sends = _sends(
        schedule.events.get(old_id) if old_id else None, schedule, now, until, settings
    )
    new_sends = _sends(trial.events.get(new_id) if new_id else None, trial, now, until, settings)
    return EditPreview(
        d,
        [],
        warnings=warnings,
        sends=[_row(p, trial) for p in new_sends],
        changes=_compare(old_sends, new_sends, schedule, trial),
        index=index,
    )

"""The console's writer: one event's mapping replaced, inserted or deleted in its YAML file,
keeping the rest of the file (comments, key order, quoting, indentation) as it was.

ruamel.yaml's round-trip mode reads the file into nodes that remember their comments and
style; an edit updates the event's node in place, key by key, so that an unchanged key keeps
its quoting and the comments around it, and keys the console does not edit (`replaces:`,
keys of a later version) stay. Pure text in, text out; `write_atomic` puts the result in place
(temp file + rename inside the schedules directory, never through a link).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from notifier.schedule.files import load_yaml_text

# Where a new event goes unless its author names another file: one file of the console's own,
# so that hand-written files change only when one of their events is edited.
CONSOLE_FILE = "console.yaml"
CONSOLE_FILE_HEADER = (
    "# 通过控制台新建的事件（可手工编辑，控制台保存时保留注释与格式）\n"
    "# Events created in the console (hand edits are fine: the console keeps comments and"
    " layout).\n"
)
# The keys of an event and of a reminder that the console's form edits; any other key of the
# file (replaces:, keys of a later version) is kept as it is.
EVENT_KEYS = frozenset(
    {
        "id", "title", "description", "date", "month", "lunar", "rrule", "duration",
        "send_at", "workdays", "audience", "template", "grace", "vars", "attachments",
        "reminders",
    }
)  # fmt: skip
REMINDER_KEYS = frozenset(
    {
        "id", "before", "on", "after", "every", "send_at", "workdays", "audience", "template",
        "attachments",
    }
)  # fmt: skip
# What the console writes: schedule files, and the audience lists it takes uploads of.
WRITABLE_SUFFIXES = (".yaml", ".yml", ".csv", ".xlsx", ".xlsm")
# Long descriptions stay on one line, as people write them (ruamel folds at 80 by default).
LINE_WIDTH = 4096


class EditError(Exception):
    """The file cannot be edited as asked (not found, not a mapping, a link, outside...)."""


def file_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _yaml(text: str) -> YAML:
    """A round-trip YAML that writes `text`'s own indentation back."""
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = LINE_WIDTH
    try:
        _, indent, offset = load_yaml_guess_indent(text)
    except Exception:  # an empty or odd file: the house style
        indent, offset = 4, 2
    offset = 2 if offset is None else offset
    indent = max(indent or 4, offset + 2)
    rt.indent(mapping=2, sequence=indent, offset=offset)
    return rt


def _load(text: str, where: Path) -> tuple[YAML, CommentedMap]:
    rt = _yaml(text)
    try:
        data = rt.load(text) if text.strip() else CommentedMap()
    except RuamelError as exc:
        raise EditError(f"{where}: invalid YAML: {exc}") from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise EditError(f"{where}: (file): expected a mapping at the top level")
    return rt, data


def _dump(rt: YAML, data: CommentedMap) -> str:
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def plain(node: Any) -> Any:
    """Round-trip nodes as plain dicts, lists and scalars (for comparing and showing)."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def event_text(event: Mapping[str, Any] | None) -> str:
    """One event as plain YAML: what a conflict's diff and a version's diff compare."""
    if event is None:
        return ""
    return yaml.safe_dump(plain(event), allow_unicode=True, sort_keys=False, width=LINE_WIDTH)


def _events(data: CommentedMap, where: Path, *, create: bool = False) -> CommentedSeq:
    events = data.get("events")
    if events is None and create:
        events = CommentedSeq()
        data["events"] = events
    if not isinstance(events, CommentedSeq):
        raise EditError(f"{where}: events: expected a list of events")
    return events


def find_event(text: str, event_id: str, where: Path) -> tuple[int, dict[str, Any]] | None:
    """The event's index in the file's `events:` and its mapping as plain data."""
    _, data = _load(text, where)
    if "events" not in data:
        return None
    for i, item in enumerate(_events(data, where)):
        if isinstance(item, Mapping) and str(item.get("id")) == event_id:
            return i, plain(item)
    return None


def _styled(value: Any, old: Any = None) -> Any:
    """A new value as ruamel should write it: a string the loader would read as something
    else (a number, a date, a time, `true`) is quoted, as is one the old value quoted; a
    multi-line text becomes a literal block; a list the old value wrote `[a, b]` stays so."""
    if isinstance(value, Mapping):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _styled(v)
        return out
    if isinstance(value, list):
        seq = CommentedSeq()
        seq.extend(_styled(v) for v in value)
        if isinstance(old, CommentedSeq) and old.fa.flow_style():
            seq.fa.set_flow_style()  # `[a, b]` stays on its line
        return seq
    if not isinstance(value, str):
        return value
    if "\n" in value:
        return LiteralScalarString(value)
    if isinstance(old, DoubleQuotedScalarString) or _misread(value):
        return DoubleQuotedScalarString(value)
    return value


def _misread(text: str) -> bool:
    try:
        return bool(load_yaml_text(f"k: {text}\n") != {"k": text})
    except yaml.YAMLError:
        return True


def _merge(node: CommentedMap, new: Mapping[str, Any], managed: frozenset[str]) -> None:
    """`node` made to say `new` for the managed keys, changing only what differs."""
    for key in [k for k in node if k in managed and k not in new]:
        del node[key]
    keys = list(node)
    for key, value in new.items():
        if key in node:
            old = node[key]
            if plain(old) == value:
                continue
            if key == "reminders" and isinstance(old, CommentedSeq) and isinstance(value, list):
                _merge_reminders(old, value)
            else:
                node[key] = _styled(value, old)
        else:
            # A new key goes before `reminders:` (which usually closes an event), else last.
            at = keys.index("reminders") if "reminders" in keys else len(node)
            node.insert(at, key, _styled(value))
            keys = list(node)


def _merge_reminders(seq: CommentedSeq, new: list[Any]) -> None:
    """Reminders are matched by position: row i of the form edits the file's reminder i."""
    for i, value in enumerate(new):
        if i < len(seq) and isinstance(seq[i], CommentedMap) and isinstance(value, Mapping):
            _merge(seq[i], value, REMINDER_KEYS)
        elif i < len(seq):
            seq[i] = _styled(value)
        else:
            seq.append(_styled(value))
    while len(seq) > len(new):
        del seq[len(new)]


def _last_slot(node: Any) -> tuple[Any, Any] | None:
    """The container and key of the last scalar in `node`, where ruamel keeps the comment
    lines that follow it (the next event's header comment is stored there)."""
    while True:
        if isinstance(node, CommentedMap) and len(node):
            key: Any = list(node)[-1]
        elif isinstance(node, CommentedSeq) and len(node):
            key = len(node) - 1
        else:
            return None
        child = node[key]
        if isinstance(child, CommentedMap | CommentedSeq) and len(child):
            node = child
            continue
        return node, key


def _take_tail(node: Any) -> Any:
    slot = _last_slot(node)
    return None if slot is None else slot[0].ca.items.pop(slot[1], None)


def _put_tail(node: Any, entry: Any) -> None:
    slot = _last_slot(node)
    if slot is not None and entry is not None:
        slot[0].ca.items[slot[1]] = entry


def replaced(text: str, event_id: str, new: Mapping[str, Any] | None, where: Path) -> str:
    """`text` with event `event_id` made to say `new` (None: deleted)."""
    rt, data = _load(text, where)
    events = _events(data, where)
    for i, item in enumerate(events):
        if isinstance(item, CommentedMap) and str(item.get("id")) == event_id:
            # The comments after the event's last line belong to what follows it: they stay
            # at the end of the event, or of the one before a deleted event.
            tail = _take_tail(item)
            if new is None:
                if i > 0:
                    _take_tail(events[i - 1])  # the deleted event's own header comment
                    _put_tail(events[i - 1], tail)
                del events[i]
                if not events:  # `events: []`, not a dangling comment over nothing
                    empty = CommentedSeq()
                    empty.fa.set_flow_style()
                    data["events"] = empty
                    data.ca.items.pop("events", None)
            else:
                _merge(item, new, EVENT_KEYS)
                _put_tail(item, tail)
            return _dump(rt, data)
    raise EditError(f"{where}: no event '{event_id}' in this file")


def inserted(text: str, new: Mapping[str, Any], where: Path) -> str:
    """`text` with `new` appended to its `events:` (created if missing)."""
    if not text.strip():
        text = CONSOLE_FILE_HEADER + "\nevents: []\n"
    rt, data = _load(text, where)
    events = _events(data, where, create=True)
    if not events and events.fa.flow_style():
        events.fa.set_block_style()
    events.append(_styled(dict(new)))
    return _dump(rt, data)


def find_audience(text: str, name: str, where: Path) -> Any:
    """An audience's definition in a file's text as plain data (None: not defined here)."""
    _, data = _load(text, where)
    audiences = data.get("audiences")
    if isinstance(audiences, Mapping) and name in audiences:
        return plain(audiences[name])
    return None


def members_replaced(text: str, name: str, members: list[dict[str, str]], where: Path) -> str:
    """`text` with the inline audience `name` listing `members` (one flow mapping each, as
    the files write them); its other keys (external:) and the file's comments stay."""
    rt, data = _load(text, where)
    audiences = data.get("audiences")
    spec = audiences.get(name) if isinstance(audiences, CommentedMap) else None
    if isinstance(spec, CommentedMap) and isinstance(spec.get("members"), CommentedSeq):
        seq = spec["members"]
    elif isinstance(spec, CommentedSeq):
        seq = spec
    else:
        raise EditError(f"{where}: audiences.{name}: not a list of members (csv or chat)")
    rows = []
    for member in members:
        row = CommentedMap()
        for key, value in member.items():
            row[key] = _styled(value)
        row.fa.set_flow_style()
        rows.append(row)
    if [plain(m) for m in seq] != members:
        del seq[:]
        seq.extend(rows)
    return _dump(rt, data)


def safe_target(directory: Path, path: Path) -> Path:
    """`path` if the console may write it: a `.yaml` file (or an audience's `.csv` list or
    `.xlsx` workbook) inside `directory`, no link on the way (the file itself or a folder);
    EditError otherwise."""
    root = directory.resolve()
    full = (directory / path) if not path.is_absolute() else path
    if full.suffix.lower() not in WRITABLE_SUFFIXES:
        raise EditError(f"{full}: only .yaml files (and .csv or .xlsx lists) are written")
    parent = full.parent.resolve()
    if not parent.is_relative_to(root):
        raise EditError(f"{full}: outside the schedules directory {directory}")
    if full.is_symlink():
        raise EditError(f"{full}: a link; the console never writes through one (不写入链接)")
    return parent / full.name


def write_atomic(directory: Path, path: Path, text: str | bytes) -> None:
    """Write `text` (or a workbook's bytes) to `path` (inside `directory`) by a temp file and
    a rename: a reader, the watcher or another instance sees the old file or the new one,
    never half of one. The file's mode is kept (new files: 0644, for a service user's group
    to read)."""
    target = safe_target(directory, path)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".console-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_file(directory: Path, path: Path) -> None:
    """Remove a file the console created (a take-back of a new file)."""
    target = safe_target(directory, path)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()


@contextlib.contextmanager
def trial_copy(directory: Path, changes: Mapping[Path, str | bytes]) -> Iterator[Path]:
    """A copy of `directory` with `changes` (path -> new text, or a workbook's bytes)
    applied, for the loader to judge before anything is written; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="notifier-edit-") as tmp:
        copy = Path(tmp) / "schedules"
        shutil.copytree(directory, copy, symlinks=True)
        root = directory.resolve()
        for path, text in changes.items():
            rel = path.resolve().relative_to(root) if path.is_absolute() else path
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                (copy / rel).write_bytes(text)
            else:
                (copy / rel).write_text(text, encoding="utf-8")
        yield copy

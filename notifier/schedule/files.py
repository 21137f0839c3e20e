"""Reading config files within bounds: size, UTF-8, YAML aliases, and error text.

A config file is input from people and tools, not trusted code: a 600-byte YAML alias bomb
once cost gigabytes. Each file is read whole but bounded (`MAX_CONFIG_FILE_BYTES`), its aliases
are counted and their expansion bounded before any value is built, and every raw value quoted
in an error is cut short.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from notifier.constants import (
    ERROR_LINE_CHARS,
    ERROR_VALUE_CHARS,
    MAX_CONFIG_ERRORS,
    MAX_CONFIG_FILE_BYTES,
    MAX_YAML_ALIAS_GROWTH,
    MAX_YAML_ALIASES,
)
from notifier.invisible import capped, invisible_problem


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
                    yield f"{path}: {yaml_path(loc) or '(file)'}: {problem}"
            elif isinstance(value, list):
                stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))
            elif isinstance(value, dict):
                for key in value:
                    problem = invisible_problem(key) if isinstance(key, str) else None
                    if problem:
                        yield f"{path}: {yaml_path((*loc, key))} (the key): {problem}"
                stack.extend(((*loc, str(k)), v) for k, v in reversed(list(value.items())))

    return capped(path, walk())


def load_yaml_text(text: str) -> Any:
    """`text` read as the loader reads a file (YAML 1.2 booleans); raises yaml.YAMLError."""
    return yaml.load(text, Loader=_YamlLoader)


def read_yaml(path: Path, errors: list[str]) -> Any:
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


def yaml_path(parts: Sequence[int | str]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out

"""Characters that make text read other than it is sent: `notifier check` warns about them.

Bidirectional controls (U+202A-202E, U+2066-2069) reorder what a reader sees ("Trojan
Source"); zero-width characters and marks (U+200B-200F, U+FEFF) hide inside a word, so a
subject looks right and does not match, or a link shows one address and holds another.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
# Warnings per file at most: one string or template line is enough to find the rest.
MAX_WARNINGS_PER_FILE = 10


def invisible_problem(text: str) -> str | None:
    """What `text` hides (code points, where the first is), or None if nothing."""
    first = INVISIBLE.search(text)
    if first is None:
        return None
    found = sorted({f"U+{ord(c):04X}" for c in INVISIBLE.findall(text)})
    line = text.count("\n", 0, first.start()) + 1
    where = f"line {line}" if "\n" in text else f"character {first.start() + 1}"
    return (
        f"invisible or bidirectional control character {', '.join(found)} (first at {where}): "
        "the text may read differently from what is sent; remove it unless it is meant "
        "(含不可见字符或双向控制字符)"
    )


def capped(path: object, lines: Iterator[str]) -> list[str]:
    """At most MAX_WARNINGS_PER_FILE lines about file `path`, then one saying how many more."""
    out: list[str] = []
    more = 0
    for line in lines:
        if len(out) < MAX_WARNINGS_PER_FILE:
            out.append(line)
        else:
            more += 1
    if more:
        out.append(f"{path}: ... and {more} more places with invisible characters")
    return out

"""Recipients from CSV audiences, each checked for what a mail header can carry: the file
and line of a bad row are reported and the row is left out; the others are kept."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, str]:
        """What templates see as `recipient`: the CSV columns, then name and email."""
        return {**self.fields, "name": self.name or self.email, "email": self.email}


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

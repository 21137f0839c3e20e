"""Recipients, each checked for what a mail header can carry (`sheets` reads them from the
audience files: the file and row of a bad one are reported and it is left out)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, str]:
        """What templates see as `recipient`: the CSV columns, then name and email."""
        return {**self.fields, "name": self.name or self.email, "email": self.email}


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

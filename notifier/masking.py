"""Secrets out of error texts, before they are stored in the ledger or logged.

Servers echo what they were sent: an SMTP `535` that quotes the password or the AUTH line, a
robot whose error repeats its key in upper case. A send's error text is shown to viewers
(delivery pages), returned by `/api` and mailed in the admins' digest, so every configured
secret is replaced by `***`, in any case, together with the forms it travels in (AUTH PLAIN's
and AUTH LOGIN's base64).
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from notifier.config import Settings

MASK = "***"
# Values shorter than this are not masked: a 1-3 character "secret" would star out ordinary
# letters and digits all over the text. Every secret with a floor (secret_checks) is far
# longer; this bounds only the SMTP password, which is the mail provider's.
MIN_MASKED_CHARS = 4


class Masker:
    """Replaces each of `secrets` (case-insensitively, longest first) by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_MASKED_CHARS}, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(map(re.escape, values)), re.IGNORECASE) if values else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)


def _b64(data: str) -> list[str]:
    # With and without its `=` padding: a server may quote it either way.
    text = base64.b64encode(data.encode("utf-8")).decode("ascii")
    return [text, text.rstrip("=")]


def smtp_auth_forms(username: str | None, password: str | None) -> list[str]:
    """The password, and what AUTH PLAIN (base64 of "\\0user\\0password", also with the
    user as authorisation identity) and AUTH LOGIN (base64 of each) put on the wire."""
    if not password:
        return []
    user = username or ""
    forms = [password, *_b64(password), *_b64(f"\0{user}\0{password}")]
    if user:
        forms += [*_b64(f"{user}\0{user}\0{password}"), *_b64(user)]
    return forms


def webhook_secret_forms(value: str) -> list[str]:
    """A hook's variable (one secret or a space-separated rotation list): each entry, and
    its base64 body without the `whsec_` prefix."""
    out = []
    for entry in value.split():
        out.append(entry)
        body = entry.removeprefix("whsec_").rstrip("=")
        if body:
            out.append(body)
    return out


def settings_masker(
    settings: Settings, hook_secrets: Mapping[str, SecretStr], more: Iterable[str] = ()
) -> Masker:
    """A Masker of every secret configured: the settings' tokens and passwords, the hook
    secrets, and `more` (the chat channels' keys and URLs, `HttpChannel.sensitive`)."""
    values: list[str] = [
        s.get_secret_value()
        for s in (
            settings.admin_token,
            settings.viewer_token,
            settings.calendar_token,
            settings.unsubscribe_secret,
            settings.bounces.imap_password,
        )
        if s is not None
    ]
    password = settings.smtp.password.get_secret_value() if settings.smtp.password else None
    values += smtp_auth_forms(settings.smtp.username, password)
    with contextlib.suppress(ValueError):
        if db_password := urlsplit(settings.database_url).password:
            values.append(unquote(db_password))
            values.append(db_password)
    for secret in hook_secrets.values():
        values += webhook_secret_forms(secret.get_secret_value())
    values += more
    return Masker(values)

"""Every configured secret checked in one place: long enough, and not a published example.

Called at start, at each reload and by `notifier check` (through `checks.load_hook_secrets`
and `checks.bad_values`). Each problem is one line that names the variable and never shows
the value (nor its length: a line of the log is not the place to narrow a guess).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from pydantic import SecretStr

from notifier.config import Settings
from notifier.signing import SECRET_PREFIX, secret_key

# Tokens typed into the console, sent as a Bearer header or put in a calendar URL, and the
# unsubscribe secret (the key of every unsubscribe link): at least this many characters.
# 16 characters of `secrets.token_urlsafe` carry 96 bits; a 1-character token falls to the
# first few guesses, and anyone who guesses the unsubscribe secret can unsubscribe anyone.
MIN_TOKEN_CHARS = 16
# Standard Webhooks (spec, "Signing secret"): a symmetric key is random, at least 24 bytes
# (192 bits) and at most 64 (512 bits), once the `whsec_` prefix is taken off and the
# base64 decoded.
MIN_WEBHOOK_KEY_BYTES = 24
MAX_WEBHOOK_KEY_BYTES = 64

# Published values, never secret: docker/.env.example's `change-me-...` (and whoever writes
# Change_Me, CHANGEME, change.me), and the example key of the Standard Webhooks documentation,
# compared by its key bytes: with or without `whsec_`, with or without `=` padding.
PLACEHOLDER_WORD = "changeme"
EXAMPLE_WEBHOOK_KEYS = frozenset({base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")})

HOW_TO_MAKE = "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
HOW_TO_MAKE_KEY = (
    '`python -c \'import base64, secrets; print("whsec_" + '
    "base64.b64encode(secrets.token_bytes(32)).decode())'`"
)

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def _key_bytes(text: str) -> bytes | None:
    """The bytes `text` stands for as a webhook key (standard or URL-safe base64, padded or
    not, `whsec_` or not, any case of the prefix); None if it is no base64 at all."""
    body = text.strip()
    if body.lower().startswith(SECRET_PREFIX):
        body = body[len(SECRET_PREFIX) :]
    body = body.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    for alphabet in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=alphabet, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


def is_placeholder(value: str) -> bool:
    """A published example value, in any case, with any separators, in any encoding of the
    example key. `value` is one secret (not a rotation list)."""
    if PLACEHOLDER_WORD in _NOT_ALNUM.sub("", value.lower()):
        return True
    return _key_bytes(value) in EXAMPLE_WEBHOOK_KEYS


def _entries(value: str) -> list[str]:
    # A hook's variable may list several secrets, separated by spaces (rotation).
    return value.split()


def _where(index: int, count: int) -> str:
    return f" (entry {index} of {count})" if count > 1 else ""


def placeholder_line(name: str, where: str = "") -> str:
    return (
        f"{name}: still the published example value{where}; set a secret of your own, e.g. "
        f"{HOW_TO_MAKE} (仍是示例占位密钥，请更换)"
    )


def token_problems(name: str, secret: SecretStr | None) -> list[str]:
    """A token or the unsubscribe secret: not a placeholder, at least MIN_TOKEN_CHARS."""
    if secret is None:
        return []
    value = secret.get_secret_value()
    if any(map(is_placeholder, _entries(value) or [value])):
        return [placeholder_line(name)]
    if len(value.strip()) < MIN_TOKEN_CHARS:
        return [
            f"{name}: shorter than {MIN_TOKEN_CHARS} characters; set a longer one, e.g. "
            f"{HOW_TO_MAKE} (密钥过短，至少 {MIN_TOKEN_CHARS} 个字符)"
        ]
    return []


def webhook_key_problems(
    name: str, secret: SecretStr | None, *, rotation: bool = True
) -> list[str]:
    """A Standard Webhooks secret, or (`rotation`: a hook's) a space-separated list of them:
    each entry decodes, holds 24 to 64 key bytes, and is not the documentation's example."""
    if secret is None:
        return []
    entries = _entries(secret.get_secret_value())
    if not entries:
        return [f"{name}: empty; set a whsec_ secret, e.g. {HOW_TO_MAKE_KEY}"]
    if len(entries) > 1 and not rotation:
        # The outbound webhook signs with one key: a list would not decode at send time.
        return [f"{name}: holds {len(entries)} values; the outbound webhook signs with one key"]
    problems = []
    for index, entry in enumerate(entries, 1):
        where = _where(index, len(entries))
        if is_placeholder(entry):
            problems.append(placeholder_line(name, where))
            continue
        try:
            key = secret_key(entry)
        except ValueError as exc:
            problems.append(f"{name}{where}: {exc}")
            continue
        if not MIN_WEBHOOK_KEY_BYTES <= len(key) <= MAX_WEBHOOK_KEY_BYTES:
            problems.append(
                f"{name}{where}: the key must be {MIN_WEBHOOK_KEY_BYTES} to "
                f"{MAX_WEBHOOK_KEY_BYTES} random bytes once base64-decoded (Standard Webhooks); "
                f"e.g. {HOW_TO_MAKE_KEY} (Webhook 密钥长度须为 {MIN_WEBHOOK_KEY_BYTES}-"
                f"{MAX_WEBHOOK_KEY_BYTES} 字节)"
            )
    return problems


def secret_problems(settings: Settings, hook_secrets: Mapping[str, SecretStr]) -> list[str]:
    """One line per secret setting or hook secret that is too weak or a placeholder."""
    problems: list[str] = []
    for name, secret in (
        ("NOTIFIER_ADMIN_TOKEN", settings.admin_token),
        ("NOTIFIER_UNSUBSCRIBE_SECRET", settings.unsubscribe_secret),
    ):
        problems += token_problems(name, secret)
    # The SMTP password is the mail provider's: no floor of ours, but never the example.
    password = settings.smtp.password
    if password is not None and is_placeholder(password.get_secret_value()):
        problems.append(placeholder_line("NOTIFIER_SMTP__PASSWORD"))
    for name, secret in sorted(hook_secrets.items()):
        problems += webhook_key_problems(name, secret)
    for name, secret in (
        ("NOTIFIER_CALENDAR_TOKEN", settings.calendar_token),
        ("NOTIFIER_VIEWER_TOKEN", settings.viewer_token),
        ("NOTIFIER_EDITOR_TOKEN", settings.editor_token),
    ):
        problems += token_problems(name, secret)
    return problems

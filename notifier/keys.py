"""Every ledger key format, in one place: "once per recipient and reminder" rests on these.

A row's key is unique in the ledger (`ON CONFLICT (key) DO NOTHING`), so making the same
row twice is a no-op. Changing a format here would send again what was sent: never do it
without a migration that rewrites the old keys.

    plan       {event}/{occurrence start}/{reminder}      a planned send (`plans`, row prefixes)
    series     {plan}@{send day}                           one day of an `every:` reminder
    again      {reminder}~{ms}                             a manual send repeated on purpose
    email      {prefix}/{address, lower case}/email        one recipient's message
    chat       {prefix}/{channel}/chat                     one chat group's message
    hook       hook:{hook}/{webhook-id}/{position}         a webhook's rows (0: its receipt)
    admin      admin:{notice}                              an admin notice's prefix
    resend     {row key}~resend-{ms}                       the console's resend of one row
"""

from __future__ import annotations

from datetime import date

# The channel name of email rows (every other row's channel is a chat or webhook channel id).
EMAIL = "email"
# `LIKE` pattern of a webhook's receipt row (position 0).
HOOK_RECEIPT_LIKE = "%/0"


def plan_key(event_id: str, start: date, reminder_id: str) -> str:
    """The ledger's name for a planned send; row keys extend it with recipient and channel."""
    return f"{event_id}/{start.isoformat()}/{reminder_id}"


def series_key(plan: str, send_day: date) -> str:
    """One day's send of an `every:` reminder (a one-off reminder's plan key stays as it is)."""
    return f"{plan}@{send_day.isoformat()}"


def again_reminder_id(reminder_id: str, now: float) -> str:
    """A manual send made again on purpose: a plan of its own, so no row of the first clashes."""
    return f"{reminder_id}~{int(now * 1000)}"


def email_key(prefix: str, email: str) -> str:
    """One recipient's row under a plan (or an admin notice's prefix)."""
    return f"{prefix}/{email.lower()}/{EMAIL}"


def chat_key(prefix: str, channel_id: str) -> str:
    """A chat row's key: one row per (plan, channel); ids hold no '@', so no email key clashes."""
    return f"{prefix}/{channel_id}/chat"


def hook_row_key(hook_id: str, webhook_id: str, position: int) -> str:
    """The key of a webhook's row `position` (0, 1, ... in recipient order).

    The row at position 0 is the webhook's receipt: a redelivery finds it by key whatever its
    content, so no receipt is written beside the rows. One key per (hook, webhook-id,
    position): hook ids hold no '/' and the position is digits, so the webhook-id is what lies
    between the first and the last '/'.
    """
    return f"hook:{hook_id}/{webhook_id}/{position:d}"


def admin_prefix(notice: str) -> str:
    """The prefix of an admin notice's rows (`digest/2026-12-06`, `workdays/<hash>`)."""
    return f"admin:{notice}"


def resend_key(key: str, now: float) -> str:
    """A row sent again from the console: a new row beside the old one."""
    return f"{key}~resend-{int(now * 1000)}"

"""What every template sees: the variables of README's 模板 Templates section, and the
recipient a chat group's message is addressed to."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from notifier.constants import MANUAL_REMINDER
from notifier.dates.rules import Occurrence
from notifier.schedule.model import Event, Reminder
from notifier.schedule.recipients import Recipient

# What templates see as `recipient` in a message to a chat group.
CHAT_RECIPIENT = Recipient("", "各位同事")


def reminder_context(
    reminder: Reminder | None, kind: str, send_date: date, position: tuple[int, int] = (1, 1)
) -> dict[str, Any]:
    """What templates see as `reminder`; `index`/`count` place a send in its `every:` series
    ("第3天 / 共5天"), 1 of 1 for any other send."""
    index, count = position
    if reminder is None:
        label = "即时通知" if kind == MANUAL_REMINDER else "通知"
        return {
            "id": kind,
            "kind": kind,
            "label": label,
            "send_date": send_date,
            "index": index,
            "count": count,
        }
    return {
        "id": reminder.id,
        "kind": "every" if reminder.every is not None else reminder.kind,
        "label": reminder.label,
        "send_date": send_date,
        "index": index,
        "count": count,
    }


def template_context(
    *,
    org: str,
    event: Event | None,
    occurrence: Occurrence | None,
    reminder: Mapping[str, Any],
    send_date: date,
    recipient: Recipient,
    unsubscribe_url: str | None,
    payload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables every template gets (README, 模板 Templates)."""
    start = occurrence.start if occurrence else send_date
    return {
        "event": {
            "id": event.id if event else "",
            "title": event.title if event else "",
            "start": start,
            "end": occurrence.end if occurrence else send_date,
            "description": event.description if event else None,
            "vars": dict(event.vars) if event else {},
        },
        "reminder": dict(reminder),
        "days_until": (start - send_date).days,
        "recipient": recipient.context(),
        "org": org,
        "payload": dict(payload or {}),
        "unsubscribe_url": unsubscribe_url,
    }

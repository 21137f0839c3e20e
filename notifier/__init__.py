"""notifier: key-date reminders and outreach, sent on time and once."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"

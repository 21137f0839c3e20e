"""One root exception; each failure its own class, the cause kept with `raise ... from`."""

from __future__ import annotations


class NotifierError(Exception):
    """Root of every error this package raises on purpose."""


class StoreError(NotifierError):
    """The ledger database cannot be reached, opened, or written."""


class StoreUnavailable(StoreError):
    """The database is away for now (connection lost or refused, locked past the busy
    timeout, disk full): weather, not a bad request. Callers back off and try again."""


class ConfigError(NotifierError):
    """Schedules or templates are invalid; `errors` lists every problem, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


class RenderError(NotifierError):
    """A template is missing or cannot render with the given variables."""


class HeaderError(RenderError, ValueError):
    """A header value would break the message (CR/LF injection, a line over 998 characters).

    A RenderError: wherever a message is made (webhook 422, API 422, `notifier check`), a bad
    header is reported as a message that cannot be rendered, never as a 500."""


class SendError(NotifierError):
    """A manual or webhook send cannot be made (unknown event, reminder, or recipients)."""

"""The HTTP side of `notifier run`: webhooks, admin API, console, health and metrics."""

from notifier.web.app import bound_port, create_web_app, start_http
from notifier.web.common import APP_KEY, ApiError, error_response
from notifier.web.intake import BATCHER_KEY, AcceptBatcher

__all__ = [
    "APP_KEY",
    "BATCHER_KEY",
    "AcceptBatcher",
    "ApiError",
    "bound_port",
    "create_web_app",
    "error_response",
    "start_http",
]

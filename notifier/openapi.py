"""The OpenAPI 3.1 description of the HTTP side (served at /openapi.json, tested by schemathesis).

Kept as data beside `web.py`: a route added there must be described here, and the schemathesis
test fails on any status or body the description does not allow.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from notifier import __version__ as VERSION

JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "what went wrong, short"},
            "detail": {"type": "string", "description": "why, and what to change"},
            "field": {"type": "string", "description": "the payload field a template lacks"},
            "reasons": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["ids", "duplicate"],
        "properties": {
            "ids": {"type": "array", "items": {"type": "integer"}},
            "duplicate": {
                "type": "boolean",
                "description": "true: this webhook-id was accepted before; the ids are the first",
            },
        },
    },
    "HookPayload": {
        "type": "object",
        "description": "Any JSON object; templates see it as `payload`.",
        "properties": {
            "send_at": {
                "type": "string",
                "description": "ISO 8601 date-time to send at (no offset: the service's zone)",
            },
            "to": {
                "type": "array",
                "description": "recipients, for hooks without an audience",
                "items": {
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "properties": {
                                "email": {"type": "string"},
                                "name": {"type": "string"},
                            },
                        },
                    ]
                },
            },
        },
        "additionalProperties": True,
    },
    "Reminder": {
        "type": "object",
        "required": ["id", "kind", "label", "send_at", "audience", "template"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["before", "on", "after"]},
            "label": {"type": "string"},
            "send_at": {"type": "string", "description": "HH:MM, the service's zone"},
            "audience": {"type": "string"},
            "template": {"type": "string"},
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "title", "description", "next", "reminders"],
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "description": _NULLABLE_STR,
            "next": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["start", "end"],
                        "properties": {
                            "start": {"type": "string", "format": "date"},
                            "end": {"type": "string", "format": "date"},
                        },
                    },
                ]
            },
            "reminders": {"type": "array", "items": _ref("Reminder")},
        },
    },
    "Events": {
        "type": "object",
        "required": ["events", "hooks"],
        "properties": {
            "events": {"type": "array", "items": _ref("Event")},
            "hooks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "template", "audience"],
                    "properties": {
                        "id": {"type": "string"},
                        "template": {"type": "string"},
                        "audience": _NULLABLE_STR,
                    },
                },
            },
        },
    },
    "PlannedSend": {
        "type": "object",
        "description": "The objects of `notifier upcoming --json`.",
        "required": [
            "event",
            "title",
            "start",
            "end",
            "reminder",
            "send_at",
            "audience",
            "recipients",
        ],
        "properties": {
            "event": {"type": "string"},
            "title": {"type": "string"},
            "start": {"type": "string", "format": "date"},
            "end": {"type": "string", "format": "date"},
            "reminder": {"type": "string"},
            "send_at": {"type": "string", "format": "date-time"},
            "audience": {"type": "string"},
            "recipients": {"type": "integer", "minimum": 0},
        },
    },
    "Upcoming": {
        "type": "object",
        "required": ["from", "to", "upcoming"],
        "properties": {
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "upcoming": {"type": "array", "items": _ref("PlannedSend")},
        },
    },
    "Delivery": {
        "type": "object",
        "description": "A ledger row's metadata; the message body is never returned.",
        "required": [
            "id",
            "event",
            "occurrence",
            "reminder",
            "recipient",
            "channel",
            "state",
            "source",
            "external",
            "subject",
            "message_id",
            "attempts",
            "last_error",
            "due_at",
            "sent_at",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "event": {"type": "string"},
            "occurrence": _NULLABLE_STR,
            "reminder": {"type": "string"},
            "recipient": {"type": "string"},
            "channel": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["pending", "sending", "sent", "failed", "dead", "missed", "skipped"],
            },
            "source": {"type": "string"},
            "external": {"type": "boolean"},
            "subject": {"type": "string"},
            "message_id": {"type": "string"},
            "attempts": {"type": "integer"},
            "last_error": _NULLABLE_STR,
            "due_at": {"type": "string", "format": "date-time"},
            "sent_at": _NULLABLE_TIME,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
    "Deliveries": {
        "type": "object",
        "required": ["deliveries"],
        "properties": {"deliveries": {"type": "array", "items": _ref("Delivery")}},
    },
    "PreviewRequest": {
        "type": "object",
        "required": ["event"],
        "properties": {
            "event": {"type": "string"},
            "reminder": {"type": "string", "description": "default: a manual notice"},
            "recipient": {"type": "string", "description": "default: the audience's first"},
            "date": {"type": "string", "format": "date", "description": "occurrence start"},
        },
    },
    "Preview": {
        "type": "object",
        "required": ["subject", "text", "html", "recipient"],
        "properties": {
            "subject": {"type": "string"},
            "text": {"type": "string"},
            "html": _NULLABLE_STR,
            "recipient": {"type": "string"},
        },
    },
    "SendRequest": {
        "type": "object",
        "properties": {
            "reminder": {"type": "string"},
            "date": {"type": "string", "format": "date"},
            "again": {"type": "boolean", "description": "send even if already sent"},
        },
    },
    "SendResult": {
        "type": "object",
        "required": ["created", "audience"],
        "properties": {
            "created": {"type": "integer", "minimum": 0},
            "audience": {"type": "integer", "minimum": 0},
        },
    },
    "ConfigStatus": {
        "type": "object",
        "required": ["errors", "warnings"],
        "properties": {
            "errors": {"type": "array", "items": {"type": "string"}},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
}

_ERROR_TEXT = {
    400: "Malformed JSON or an invalid parameter",
    401: "Missing or wrong credentials (bearer token, or webhook signature)",
    404: "Unknown hook or event",
    413: "Body over the size limit",
    422: "Well-formed but unusable (a template cannot render, a value out of range)",
    503: "Not available (admin token not configured, hook secret not set, shutting down)",
}

_ADMIN: list[dict[str, list[str]]] = [{"bearer": []}]
_ADMIN_ERRORS = (401, 503)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


_PATHS: dict[str, Any] = {
    "/hooks/{hook_id}": {
        "post": {
            "summary": "Trigger a templated message (Standard Webhooks signature)",
            "operationId": "postHook",
            "tags": ["webhooks"],
            "parameters": [
                _path("hook_id"),
                _header("webhook-id", "unique per message; a repeat returns the first answer"),
                _header("webhook-timestamp", "unix seconds, within 5 minutes of the server"),
                _header("webhook-signature", "space-separated `v1,<base64>` signatures"),
            ],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("HookPayload")}},
            },
            "responses": {
                "202": _json(_ref("Accepted"), "Committed; the ids of the deliveries created"),
                **_errors(400, 401, 404, 413, 422, 503),
            },
        }
    },
    "/api/events": {
        "get": {
            "summary": "Configured events and hooks",
            "operationId": "listEvents",
            "tags": ["admin"],
            "security": _ADMIN,
            "responses": {
                "200": _json(_ref("Events"), "Events with their next occurrence"),
                **_errors(*_ADMIN_ERRORS),
            },
        }
    },
    "/api/upcoming": {
        "get": {
            "summary": "Planned sends in a window (same objects as `notifier upcoming --json`)",
            "operationId": "listUpcoming",
            "tags": ["admin"],
            "security": _ADMIN,
            "parameters": [
                _query("from", {"type": "string", "format": "date"}, "first day (default today)"),
                _query("to", {"type": "string", "format": "date"}, "last day (default +60 days)"),
            ],
            "responses": {
                "200": _json(_ref("Upcoming"), "Planned sends, by time"),
                **_errors(400, *_ADMIN_ERRORS, 422),
            },
        }
    },
    "/api/deliveries": {
        "get": {
            "summary": "The ledger, newest first (metadata and subject, never bodies)",
            "operationId": "listDeliveries",
            "tags": ["admin"],
            "security": _ADMIN,
            "parameters": [
                _query(
                    "state",
                    {
                        "type": "string",
                        "enum": [
                            "pending",
                            "sending",
                            "sent",
                            "failed",
                            "dead",
                            "missed",
                            "skipped",
                        ],
                    },
                    "only this state",
                ),
                _query("event", {"type": "string"}, "only this event id (`hook:<id>` for hooks)"),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                    "at most this many rows",
                ),
            ],
            "responses": {
                "200": _json(_ref("Deliveries"), "Ledger rows"),
                **_errors(400, *_ADMIN_ERRORS, 422),
            },
        }
    },
    "/api/preview": {
        "post": {
            "summary": "Render an event's message without sending it",
            "operationId": "preview",
            "tags": ["admin"],
            "security": _ADMIN,
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("PreviewRequest")}},
            },
            "responses": {
                "200": _json(_ref("Preview"), "The rendered message"),
                **_errors(400, *_ADMIN_ERRORS, 404, 413, 422),
            },
        }
    },
    "/api/events/{event_id}/send": {
        "post": {
            "summary": "Send now to the event's audience (as `notifier send`)",
            "operationId": "sendEvent",
            "tags": ["admin"],
            "security": _ADMIN,
            "parameters": [_path("event_id")],
            "requestBody": {
                "required": False,
                "content": {JSON: {"schema": _ref("SendRequest")}},
            },
            "responses": {
                "200": _json(_ref("SendResult"), "Rows created (0: already sent) and audience"),
                **_errors(400, *_ADMIN_ERRORS, 404, 413, 422),
            },
        }
    },
    "/api/config": {
        "get": {
            "summary": "Problems in the configuration files on disk, and warnings",
            "operationId": "configStatus",
            "tags": ["admin"],
            "security": _ADMIN,
            "responses": {
                "200": _json(_ref("ConfigStatus"), "Errors (non-empty: running an older config)"),
                **_errors(*_ADMIN_ERRORS),
            },
        }
    },
    "/calendar.ics": {
        "get": {
            "summary": "The key dates of the next 12 months as an iCalendar feed",
            "operationId": "calendar",
            "tags": ["admin"],
            "security": [{"token": []}],
            "responses": {
                "200": {
                    "description": "One all-day VEVENT per occurrence",
                    "content": {"text/calendar": {"schema": {"type": "string"}}},
                },
                **_errors(*_ADMIN_ERRORS),
            },
        }
    },
    "/unsubscribe": {
        "get": {
            "summary": "Confirmation page (never unsubscribes: link scanners use GET)",
            "operationId": "unsubscribePage",
            "tags": ["unsubscribe"],
            "parameters": [
                {"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {
                    "description": "A page with a POST form",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
                **_errors(400),
            },
        },
        "post": {
            "summary": "RFC 8058 one-click unsubscribe",
            "operationId": "unsubscribe",
            "tags": ["unsubscribe"],
            "parameters": [
                {"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": {
                "required": False,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Unsubscribed (HTML when posted from the confirmation page)",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["unsubscribed"],
                                "properties": {"unsubscribed": {"type": "string"}},
                            }
                        },
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                **_errors(400, 413),
            },
        },
    },
    "/healthz": {
        "get": {
            "summary": "The process is alive",
            "operationId": "healthz",
            "tags": ["operations"],
            "responses": {"200": _json(_ref("Status"), "Alive")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Database reachable and configuration valid",
            "operationId": "readyz",
            "tags": ["operations"],
            "responses": {"200": _json(_ref("Status"), "Ready"), **_errors(503)},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text format 0.0.4)",
            "operationId": "metrics",
            "tags": ["operations"],
            "responses": {
                "200": {
                    "description": "Metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This description",
            "operationId": "openapi",
            "tags": ["operations"],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
        }
    },
}


@cache
def _spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notifier",
            "version": VERSION,
            "description": "Key-date reminders and outreach by email: webhook triggers, "
            "admin API, calendar feed, health and metrics. Errors are "
            '`{"error": ..., "detail": ...}`.',
        },
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "responses": {
                f"E{code}": _json(_ref("Error"), text) for code, text in _ERROR_TEXT.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "NOTIFIER_ADMIN_TOKEN",
                },
                "token": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "NOTIFIER_CALENDAR_TOKEN: the calendar feed's own "
                    "read-only token (the admin token is refused there)",
                },
            },
        },
    }


def openapi_spec() -> dict[str, Any]:
    """A fresh copy of the description (callers may change it)."""
    return copy.deepcopy(_spec())

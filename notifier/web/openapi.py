"""The OpenAPI 3.1 description of the HTTP side (served at /openapi.json, tested by schemathesis).

Built, not written: the schemas are the JSON schemas of the pydantic models in
`notifier.web.schemas` (the ones the handlers validate and serialise with), and `ROUTES` names,
per route, its models, parameters, security and status codes. A route added to the app must be
added to `ROUTES` (a test compares the two); the schemathesis test fails on any status or body
the description does not allow.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

import notifier.web.schemas as s
from notifier import __version__ as VERSION

JSON = "application/json"
REF = "#/components/schemas/{model}"
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA = "text/csv"

# A body: a model (sent as JSON) or the media type of a text body.
Body = type[BaseModel] | str
Security = Literal["bearer", "token"]

ERROR_TEXT: Mapping[int, str] = {
    400: "Malformed JSON or an invalid parameter",
    401: "Missing or wrong credentials (bearer token, or webhook signature)",
    404: "Unknown hook or event, or an address not on the suppression list",
    413: "Body over the size limit",
    422: "Well-formed but unusable (a template cannot render, a value out of range)",
    429: "Too many wrong tokens from this address: try again after Retry-After seconds",
    503: "Not available (admin token not configured, database or hook secret unavailable, "
    "shutting down)",
}


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: what it takes, what it answers, who may call it."""

    method: Literal["get", "post", "delete"]
    path: str  # aiohttp's canonical form: `{name}` for a path parameter
    operation_id: str
    summary: str
    tag: str
    ok: tuple[int, str, tuple[Body, ...]]  # status, description, bodies
    errors: tuple[int, ...] = ()
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_media: str = JSON
    body_required: bool = True
    security: tuple[Security, ...] = ()


ADMIN: tuple[Security, ...] = ("bearer",)
ADMIN_ERRORS = (401, 429, 503)

ROUTES: tuple[Route, ...] = (
    Route(
        "post",
        "/hooks/{hook_id}",
        "postHook",
        "Trigger a templated message (Standard Webhooks signature)",
        "webhooks",
        ok=(202, "Committed; the ids of the deliveries created", (s.Accepted,)),
        errors=(400, 401, 404, 413, 422, 503),
        headers=s.HookHeaders,
        body=s.HookPayload,
    ),
    Route(
        "get",
        "/api/events",
        "listEvents",
        "Configured events and hooks",
        "admin",
        ok=(200, "Events with their next occurrence", (s.Events,)),
        errors=ADMIN_ERRORS,
        security=ADMIN,
    ),
    Route(
        "get",
        "/api/upcoming",
        "listUpcoming",
        "Planned sends in a window (same objects as `notifier upcoming --json`)",
        "admin",
        ok=(200, "Planned sends, by time", (s.Upcoming,)),
        errors=(400, *ADMIN_ERRORS, 422),
        query=s.UpcomingQuery,
        security=ADMIN,
    ),
    Route(
        "get",
        "/api/deliveries",
        "listDeliveries",
        "The ledger, newest first (metadata and subject, never bodies)",
        "admin",
        ok=(200, "Ledger rows", (s.Deliveries,)),
        errors=(400, *ADMIN_ERRORS, 422),
        query=s.DeliveriesQuery,
        security=ADMIN,
    ),
    Route(
        "get",
        "/api/deliveries/export",
        "exportDeliveries",
        "The delivery log as a record (台账): XLSX or CSV, Chinese headers, local times",
        "admin",
        ok=(200, "The record, streamed", (XLSX_MEDIA, CSV_MEDIA)),
        errors=(400, *ADMIN_ERRORS, 422),
        query=s.ExportQuery,
        security=ADMIN,
    ),
    Route(
        "post",
        "/api/preview",
        "preview",
        "Render an event's message without sending it",
        "admin",
        ok=(200, "The rendered message", (s.Preview,)),
        errors=(400, *ADMIN_ERRORS, 404, 413, 422),
        body=s.PreviewRequest,
        security=ADMIN,
    ),
    Route(
        "post",
        "/api/events/{event_id}/send",
        "sendEvent",
        "Send now to the event's audience (as `notifier send`)",
        "admin",
        ok=(200, "Rows created (0: already sent) and audience", (s.SendResult,)),
        errors=(400, *ADMIN_ERRORS, 404, 413, 422),
        body=s.SendRequest,
        body_required=False,
        security=ADMIN,
    ),
    Route(
        "get",
        "/api/config",
        "configStatus",
        "Problems in the configuration files on disk, and warnings",
        "admin",
        ok=(200, "Errors (non-empty: running an older config) and warnings", (s.ConfigStatus,)),
        errors=ADMIN_ERRORS,
        security=ADMIN,
    ),
    Route(
        "get",
        "/api/suppressions",
        "listSuppressions",
        "The suppression list (addresses that bounced), the latest bounce first",
        "admin",
        ok=(200, "Addresses with their reason and the server's words", (s.Suppressions,)),
        errors=(400, *ADMIN_ERRORS, 422),
        query=s.SuppressionsQuery,
        security=ADMIN,
    ),
    Route(
        "delete",
        "/api/suppressions/{address}",
        "removeSuppression",
        "Take an address off the suppression list (audited; outreach mails it again)",
        "admin",
        ok=(200, "Removed", (s.Unsuppressed,)),
        errors=(*ADMIN_ERRORS, 404, 422),
        security=ADMIN,
    ),
    Route(
        "get",
        "/calendar.ics",
        "calendar",
        "The key dates of the next 12 months as an iCalendar feed",
        "admin",
        ok=(200, "One all-day VEVENT per occurrence", ("text/calendar",)),
        errors=ADMIN_ERRORS,
        security=("token",),
    ),
    Route(
        "get",
        "/calendar/workdays.ics",
        "workdays",
        "Days off (休) and make-up workdays (班), this year and the next, as an iCalendar feed",
        "admin",
        ok=(
            200,
            "One all-day VEVENT per block of days off and per make-up workday",
            ("text/calendar",),
        ),
        errors=ADMIN_ERRORS,
        security=("token",),
    ),
    Route(
        "get",
        "/unsubscribe",
        "unsubscribePage",
        "Confirmation page (never unsubscribes: link scanners use GET)",
        "unsubscribe",
        ok=(200, "A page with a POST form", ("text/html",)),
        errors=(400,),
        query=s.UnsubscribeQuery,
    ),
    Route(
        "post",
        "/unsubscribe",
        "unsubscribe",
        "RFC 8058 one-click unsubscribe",
        "unsubscribe",
        ok=(
            200,
            "Unsubscribed (HTML when posted from the confirmation page)",
            (s.Unsubscribed, "text/html"),
        ),
        errors=(400, 413, 503),
        query=s.UnsubscribeQuery,
        body=s.OneClick,
        body_media="application/x-www-form-urlencoded",
        body_required=False,
    ),
    Route(
        "get",
        "/healthz",
        "healthz",
        "The process is alive",
        "operations",
        ok=(200, "Alive", (s.Health,)),
    ),
    Route(
        "get",
        "/readyz",
        "readyz",
        "Database reachable and configuration valid (by component; the errors' own text"
        " with the admin bearer token)",
        "operations",
        ok=(200, "Ready", (s.Ready,)),
        errors=(401, 429, 503),
    ),
    Route(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics (text format 0.0.4)",
        "operations",
        ok=(200, "Metrics", ("text/plain",)),
    ),
    Route(
        "get",
        "/openapi.json",
        "openapi",
        "This description",
        "operations",
        ok=(200, "OpenAPI 3.1", (s.OpenApiDocument,)),
    ),
)

_PATH_PARAM = re.compile(r"\{(\w+)\}")


def _inputs(route: Route) -> list[type[BaseModel]]:
    return [m for m in (route.query, route.headers, route.body) if m is not None]


def _answers(route: Route) -> list[type[BaseModel]]:
    return [b for b in route.ok[2] if not isinstance(b, str)]


def _component_schemas() -> dict[str, Any]:
    """JSON schemas of every model the routes name: inputs as validated, answers as written."""
    keyed: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for route in ROUTES:
        keyed.update({(m, "validation"): None for m in _inputs(route)})
        keyed.update({(m, "serialization"): None for m in _answers(route)})
    keyed[(s.Error, "serialization")] = None
    _, top = models_json_schema(list(keyed), ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema without its `null` branch: a query or header value is a
    string or absent, never null (and schemathesis would try to send one)."""
    branches = schema.get("anyOf")
    if not branches or {"type": "null"} not in branches:
        return schema
    rest = [b for b in branches if b != {"type": "null"}]
    out = {k: v for k, v in schema.items() if k != "anyOf"}
    if out.get("default", ...) is None:
        del out["default"]
    if len(rest) == 1:
        return {**rest[0], **out}
    return {**out, "anyOf": rest}


def _parameters(model: type[BaseModel], where: str, defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = defs[model.__name__]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        description = prop.pop("description", None)
        param: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": name in required,
            "schema": _without_null(prop),
        }
        if description:
            param["description"] = description
        out.append(param)
    return out


def _content(bodies: tuple[Body, ...]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for body in bodies:
        if isinstance(body, str):
            content[body] = {"schema": {"type": "string"}}
        else:
            content[JSON] = {"schema": {"$ref": REF.format(model=body.__name__)}}
    return content


def _operation(route: Route, defs: dict[str, Any]) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(route.path)
    ]
    if route.query is not None:
        params += _parameters(route.query, "query", defs)
    if route.headers is not None:
        params += _parameters(route.headers, "header", defs)
    status, description, bodies = route.ok
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.operation_id,
        "tags": [route.tag],
    }
    if route.security:
        op["security"] = [{name: []} for name in route.security]
    if params:
        op["parameters"] = params
    if route.body is not None:
        ref = {"$ref": REF.format(model=route.body.__name__)}
        op["requestBody"] = {
            "required": route.body_required,
            "content": {route.body_media: {"schema": ref}},
        }
    op["responses"] = {
        str(status): {"description": description, "content": _content(bodies)},
        **{str(code): {"$ref": f"#/components/responses/E{code}"} for code in route.errors},
    }
    return op


@cache
def _document() -> dict[str, Any]:
    defs = _component_schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route, defs)
    # Parameters are inlined in the operations; their models need no component of their own.
    for route in ROUTES:
        for model in (route.query, route.headers):
            if model is not None:
                defs.pop(model.__name__, None)
    error = {"$ref": REF.format(model=s.Error.__name__)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notifier",
            "version": VERSION,
            "description": "Key-date reminders and outreach by email: webhook triggers, "
            "admin API, calendar feed, health and metrics. Errors are "
            '`{"error": ..., "detail": ...}`.',
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(defs.items())),
            "responses": {
                f"E{code}": {"description": text, "content": {JSON: {"schema": error}}}
                for code, text in ERROR_TEXT.items()
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
    return copy.deepcopy(_document())

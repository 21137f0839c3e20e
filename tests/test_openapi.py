"""/openapi.json is built from the models the admin API validates and answers with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from typing import Any

import pytest
import schemathesis
from aiohttp.test_utils import TestClient, TestServer

from notifier.schedule.planner import planned_json
from notifier.service import App
from notifier.web import create_web_app, schemas
from notifier.web.openapi import ROUTES, openapi_spec
from tests.conftest import MakeSettings
from tests.test_web import ADMIN, HOOK_ENV, NOW, PAYLOAD, SECRET, Client, post_hook

pytestmark = pytest.mark.usefixtures("hook_secret_env")


@pytest.fixture
async def service(make_settings: MakeSettings) -> AsyncIterator[tuple[App, Client]]:
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            yield app, client


@pytest.fixture
def hook_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOOK_ENV, SECRET)


def test_the_document_is_valid_openapi_3_1() -> None:
    spec = openapi_spec()
    assert spec["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(spec).validate()  # the OpenAPI 3.1 meta-schema


def test_every_schema_comes_from_a_model_and_every_ref_resolves() -> None:
    spec = openapi_spec()
    components = spec["components"]["schemas"]
    named = {
        body.__name__
        for route in ROUTES
        for body in (route.body, *route.ok[2])
        if body is not None and not isinstance(body, str)
    }
    assert named <= set(components)
    delivery = schemas.Delivery.model_json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    del delivery["$defs"]
    assert components["Delivery"] == delivery
    assert delivery["additionalProperties"] is False  # a message body can never slip in
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert refs
    for ref in refs:
        kind, name = ref.removeprefix("#/components/").split("/")
        assert name in spec["components"][kind], ref


def test_query_parameters_come_from_the_query_models() -> None:
    ops = openapi_spec()["paths"]
    params = {p["name"]: p for p in ops["/api/deliveries"]["get"]["parameters"]}
    assert params["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 50,
    }
    assert params["state"]["schema"] == {"$ref": "#/components/schemas/State"}
    assert not any(p["required"] for p in params.values())
    window = [p["name"] for p in ops["/api/upcoming"]["get"]["parameters"]]
    assert window == ["from", "to"]
    headers = [p["name"] for p in ops["/hooks/{hook_id}"]["post"]["parameters"][1:]]
    assert headers == ["webhook-id", "webhook-timestamp", "webhook-signature"]
    # Parameter models are inlined, not components.
    assert "DeliveriesQuery" not in openapi_spec()["components"]["schemas"]


async def test_the_hand_written_202_body_is_an_accepted_model(
    service: tuple[App, Client],
) -> None:
    _, client = service
    status, body = await post_hook(client, PAYLOAD)
    assert status == 202
    accepted = schemas.Accepted.model_validate(body, strict=True)
    assert len(accepted.ids) == 2 and accepted.duplicate is False
    _, again = await post_hook(client, PAYLOAD)
    assert schemas.Accepted.model_validate(again, strict=True).duplicate is True


async def test_upcoming_answers_the_cli_objects_exactly(service: tuple[App, Client]) -> None:
    app, client = service
    body = await (await client.get("/api/upcoming", headers=ADMIN)).json()
    tz = app.settings.tz
    first = datetime.combine(app.now().date(), time(0), tz)
    sends = app.upcoming(first, first + timedelta(days=61))
    assert body["upcoming"] == [planned_json(p, app.schedule) for p in sends]
    assert body["upcoming"][0]["send_at"].endswith("+08:00")


@pytest.mark.parametrize(
    ("path", "payload", "status", "error", "detail"),
    [
        ("/api/preview", b"{", 400, "malformed JSON", "the body is not valid JSON: "),
        ("/api/preview", b"[1]", 400, "malformed JSON", "the body must be a JSON object"),
        ("/api/preview", b"[" * 100_000, 400, "malformed JSON", "not valid JSON"),
        ("/api/preview", b"{}", 422, "invalid field", "event: Field required"),
        ("/api/preview", b'{"event": ""}', 422, "invalid field", "event: String should"),
        ("/api/preview", b'{"event": 5, "date": 1}', 422, "invalid field", "(and 1 more)"),
        (
            "/api/preview",
            b'{"event": "security-day", "date": "soon"}',
            400,
            "invalid field",
            "date: Input should be a valid date",
        ),
        (
            "/api/preview",
            b'{"event": "security-day", "date": "1900-12-31"}',
            422,
            "invalid field",
            "date: Input should be greater than or equal to 1901-01-01",
        ),
        (
            "/api/events/security-day/send",
            b'{"again": "yes"}',
            422,
            "invalid field",
            "again: Input should be a valid boolean",
        ),
        (
            "/api/events/security-day/send",
            b'{"reminder": 7}',
            422,
            "invalid field",
            "reminder: Input should be a valid string",
        ),
    ],
)
async def test_a_body_the_model_refuses_gets_a_json_error_naming_the_field(
    service: tuple[App, Client], path: str, payload: bytes, status: int, error: str, detail: str
) -> None:
    app, client = service
    resp = await client.post(path, headers=ADMIN, data=payload)
    assert resp.status == status
    body = await resp.json()
    assert body["error"] == error
    assert detail in body["detail"]
    assert schemas.Error.model_validate(body).detail == body["detail"]
    assert await app.store.list_deliveries(limit=10) == []


@pytest.mark.parametrize(
    ("query", "status", "detail"),
    [
        ("deliveries?limit=%2B5", 400, "limit: expected a positive integer"),
        ("deliveries?limit=1_000", 400, "limit: expected a positive integer"),
        ("deliveries?limit=1001", 422, "limit: Input should be less than or equal to 1000"),
        ("deliveries?state=SENT", 400, "state: Input should be 'pending'"),
        ("deliveries?event=" + "x" * 201, 400, "event: String should have at most 200"),
        ("upcoming?from=0", 400, "from: '0' is not a date (YYYY-MM-DD)"),
        ("upcoming?to=2026-04-10T00:00", 400, "to: '2026-04-10T00:00' is not a date"),
        ("upcoming?to=1900-01-01", 422, "to: Input should be greater than or equal to 1901"),
    ],
)
async def test_a_query_the_model_refuses_gets_a_json_error_naming_the_parameter(
    service: tuple[App, Client], query: str, status: int, detail: str
) -> None:
    _, client = service
    resp = await client.get(f"/api/{query}", headers=ADMIN)
    assert resp.status == status
    body = await resp.json()
    assert body["error"] == "invalid parameter"
    assert body["detail"].startswith(detail)


async def test_an_empty_send_body_means_the_defaults(service: tuple[App, Client]) -> None:
    _, client = service
    path = "/api/events/security-day/send"
    resp = await client.post(path, headers=ADMIN, data=b" \n")
    assert resp.status == 200
    assert await resp.json() == {"created": 2, "audience": 2}
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"

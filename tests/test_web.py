"""The HTTP side against a real App on a real SQLite file: webhooks, admin API, feed, health."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from notifier.channels.status import ChannelStatus
from notifier.checks import load_config
from notifier.compose.tokens import unsubscribe_token
from notifier.config import HttpSettings, Settings
from notifier.errors import ConfigError
from notifier.ledger.db import connect
from notifier.ledger.models import State
from notifier.ledger.store import Store
from notifier.service import App
from notifier.web import BATCHER_KEY, create_web_app, start_http
from notifier.web.console import is_console_route
from notifier.web.unsubscribe import mask_address
from tests.conftest import ROOT, MakeSettings, write_schedule

TZ = ZoneInfo("Asia/Shanghai")
SECRET = "whsec_" + base64.b64encode(b"visit-request-secret-0123456789!").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"an-older-secret-for-rotation-000").decode()
HOOK_ENV = "NOTIFIER_HOOK_VISIT_REQUEST"
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
PAYLOAD = {"visitor": "张三", "org": "ACME 公司", "date": "2026-03-05"}
STAFF = ["fazhi@fao.example.com", "office@fao.example.com"]
# A fixed clock: 2026-03-01 10:00 in Shanghai (the security-day event is on 04-15).
NOW = datetime(2026, 3, 1, 10, 0, tzinfo=TZ).timestamp()

Client = TestClient[Any, Any]


def signed(
    body: bytes,
    msg_id: str = "msg_1",
    *,
    ts: float = NOW,
    secret: str = SECRET,
) -> dict[str, str]:
    """Headers as the reference `standardwebhooks` sender makes them."""
    sig = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(ts)),
        "webhook-signature": sig,
        "Content-Type": "application/json",
    }


def body_of(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


async def post_hook(
    client: Client, payload: object, msg_id: str = "msg_1", *, hook: str = "visit-request"
) -> tuple[int, dict[str, Any]]:
    body = body_of(payload)
    resp = await client.post(f"/hooks/{hook}", data=body, headers=signed(body, msg_id))
    return resp.status, await resp.json()


async def ledger(settings: Settings) -> list[Any]:
    """The rows as a fresh connection sees them: what is committed."""
    db = connect(settings.database_url)
    async with db:
        return await Store(db).list_deliveries(limit=1000)


@pytest.fixture
def hook_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOOK_ENV, SECRET)


@pytest.fixture
async def service(
    make_settings: MakeSettings, hook_secret_env: None
) -> AsyncIterator[tuple[App, Client]]:
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            yield app, client


# --- webhooks -------------------------------------------------------------------------------


async def test_a_signed_webhook_is_committed_before_the_202(
    service: tuple[App, Client],
) -> None:
    app, client = service
    status, body = await post_hook(client, PAYLOAD)
    assert status == 202
    assert body["duplicate"] is False
    assert len(body["ids"]) == 2
    rows = await ledger(app.settings)  # a fresh connection: the rows are committed
    assert sorted(r.id for r in rows) == sorted(body["ids"])
    assert sorted(r.recipient for r in rows) == STAFF
    assert {r.subject for r in rows} == {"来访申请：张三（ACME 公司）"}
    assert {r.state for r in rows} == {State.PENDING}
    assert {r.due_at for r in rows} == {NOW}
    assert {r.source for r in rows} == {"hook"}


async def test_a_replayed_webhook_id_returns_the_first_answer_and_creates_nothing(
    service: tuple[App, Client],
) -> None:
    app, client = service
    _, first = await post_hook(client, PAYLOAD, "msg_replay")
    status, again = await post_hook(client, {**PAYLOAD, "visitor": "李四"}, "msg_replay")
    assert status == 202
    assert again == {"ids": first["ids"], "duplicate": True}
    assert len(await ledger(app.settings)) == 2


async def test_a_hook_to_payload_recipients_sends_once_per_address_and_replays_by_id(
    make_settings: MakeSettings, hook_secret_env: None
) -> None:
    settings = make_settings()
    write_schedule(
        settings.schedules_dir,
        """\
        hooks:
          - {id: notice, secret_env: NOTIFIER_HOOK_VISIT_REQUEST, template: visit-notice}
        """,
        name="notice.yaml",
    )
    to = ["a@example.org", {"email": "b@example.org", "name": "乙"}, "A@Example.org"]
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            status, first = await post_hook(client, {**PAYLOAD, "to": to}, "n1", hook="notice")
            assert status == 202 and len(first["ids"]) == 2  # a@ once, whatever its case
            # The same webhook-id with another list: the first answer, nothing new.
            again = {**PAYLOAD, "to": ["c@example.org"]}
            assert await post_hook(client, again, "n1", hook="notice") == (
                202,
                {"ids": first["ids"], "duplicate": True},
            )
    rows = await ledger(settings)
    assert sorted(r.recipient for r in rows if r.event_id == "hook:notice") == [
        "a@example.org",
        "b@example.org",
    ]


async def test_concurrent_webhooks_share_commits(service: tuple[App, Client]) -> None:
    app, client = service
    results = await asyncio.gather(*(post_hook(client, PAYLOAD, f"msg_{i}") for i in range(40)))
    assert {status for status, _ in results} == {202}
    ids = [i for _, body in results for i in body["ids"]]
    assert len(set(ids)) == 80
    assert len(await ledger(app.settings)) == 80
    batcher = client.server.app[BATCHER_KEY]
    assert batcher.items == 40
    assert batcher.batches < 40  # grouped: fewer transactions than requests


async def test_a_bad_request_in_a_batch_fails_alone(service: tuple[App, Client]) -> None:
    app, client = service
    good = [post_hook(client, PAYLOAD, f"msg_ok_{i}") for i in range(10)]
    unrenderable = post_hook(client, {"org": "ACME", "date": "2026-03-05"}, "msg_422")
    body = body_of(PAYLOAD)
    forged = client.post(
        "/hooks/visit-request",
        data=body,
        headers={**signed(body, "msg_401"), "webhook-signature": "v1,AAAA"},
    )
    *oks, (status_422, _), resp_401 = await asyncio.gather(*good, unrenderable, forged)
    assert {status for status, _ in oks} == {202}
    assert (status_422, resp_401.status) == (422, 401)
    assert len(await ledger(app.settings)) == 20  # the ten good ones, two staff each


async def test_key_rotation_sender_sends_two_signatures(service: tuple[App, Client]) -> None:
    _, client = service
    body = body_of(PAYLOAD)
    headers = signed(body, "msg_rot")
    old = signed(body, "msg_rot", secret=OLD_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
    resp = await client.post("/hooks/visit-request", data=body, headers=headers)
    assert resp.status == 202


async def test_key_rotation_receiver_holds_two_secrets(
    service: tuple[App, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = service
    monkeypatch.setenv(HOOK_ENV, f"{SECRET} {OLD_SECRET}")
    assert app.reload()  # secrets are read at start and at reload, not per request
    body = body_of(PAYLOAD)
    resp = await client.post(
        "/hooks/visit-request", data=body, headers=signed(body, "m", secret=OLD_SECRET)
    )
    assert resp.status == 202


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda h: {**h, "webhook-timestamp": str(int(NOW) - 301)}, "too old"),
        (lambda h: {**h, "webhook-timestamp": str(int(NOW) + 3600)}, "too new"),
        (lambda h: {**h, "webhook-signature": "v1," + "A" * 44}, "no matching signature"),
        (lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, "missing header"),
        (lambda h: {"Content-Type": "application/json"}, "missing header"),
    ],
    ids=["stale", "future", "wrong", "no-signature", "no-headers"],
)
async def test_unauthentic_webhooks_get_401_and_create_nothing(
    service: tuple[App, Client], tamper: Callable[[dict[str, str]], dict[str, str]], reason: str
) -> None:
    app, client = service
    body = body_of(PAYLOAD)
    resp = await client.post("/hooks/visit-request", data=body, headers=tamper(signed(body)))
    assert resp.status == 401
    error = await resp.json()
    assert error["error"] == "invalid signature"
    assert reason in error["detail"]
    assert await ledger(app.settings) == []


async def test_a_signature_by_another_secret_is_refused(service: tuple[App, Client]) -> None:
    _, client = service
    body = body_of(PAYLOAD)
    resp = await client.post(
        "/hooks/visit-request", data=body, headers=signed(body, secret=OLD_SECRET)
    )
    assert resp.status == 401


async def test_an_unknown_hook_is_404_and_counted_as_unknown(
    service: tuple[App, Client],
) -> None:
    _, client = service
    status, body = await post_hook(client, PAYLOAD, hook="no-such-hook")
    assert status == 404
    assert body["error"] == "unknown hook"
    metrics = (await (await client.get("/metrics")).text()).splitlines()
    assert 'notifier_webhook_requests_total{hook="unknown",status="404"} 1.0' in metrics


async def test_a_body_over_the_limit_is_413_json(
    make_settings: MakeSettings, hook_secret_env: None
) -> None:
    settings = make_settings(http=HttpSettings(port=0, max_body_bytes=1024))
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            status, body = await post_hook(client, {**PAYLOAD, "pad": "x" * 2000})
            assert status == 413
            assert body["error"] == "request entity too large"
            assert "1024" in body["detail"]


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"visitor": ', "not valid JSON"),
        (b"\xff\xfe garbage", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
    ids=["truncated", "binary", "array", "deep"],
)
async def test_malformed_json_is_400(service: tuple[App, Client], raw: bytes, detail: str) -> None:
    _, client = service
    sig = Webhook(SECRET).sign("m", datetime.fromtimestamp(NOW, UTC), raw.decode("latin-1"))
    # The reference signer takes text; sign the exact bytes ourselves for non-UTF-8 bodies.
    from notifier.signing import sign

    headers = {
        "webhook-id": "m",
        "webhook-timestamp": str(int(NOW)),
        "webhook-signature": sign(SECRET, "m", int(NOW), raw) if raw[:1] == b"\xff" else sig,
    }
    resp = await client.post("/hooks/visit-request", data=raw, headers=headers)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "malformed JSON"
    assert detail in body["detail"]


async def test_a_payload_the_template_cannot_render_is_422_naming_the_field(
    service: tuple[App, Client],
) -> None:
    app, client = service
    status, body = await post_hook(client, {"org": "ACME", "date": "2026-03-05"})
    assert status == 422
    assert body["error"] == "cannot render"
    assert body["field"] == "visitor"
    assert "visitor" in body["detail"]
    assert await ledger(app.settings) == []


@pytest.mark.parametrize("send_at", [42, "next tuesday", "2026-13-01T00:00"])
async def test_a_bad_send_at_is_422(service: tuple[App, Client], send_at: object) -> None:
    _, client = service
    status, body = await post_hook(client, {**PAYLOAD, "send_at": send_at})
    assert status == 422
    assert "send_at" in body["detail"]


async def test_send_at_in_the_future_is_kept_and_survives_a_restart(
    make_settings: MakeSettings, hook_secret_env: None
) -> None:
    settings = make_settings()
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            offset, _ = await post_hook(client, {**PAYLOAD, "send_at": "2026-03-02T09:30+08:00"})
            naive, _ = await post_hook(client, {**PAYLOAD, "send_at": "2026-03-03T09:30"}, "m2")
            past, _ = await post_hook(client, {**PAYLOAD, "send_at": "2020-01-01T00:00Z"}, "m3")
    assert offset == naive == past == 202
    # Reopen: a new App on the same file sees the rows and their due times.
    async with App(settings, clock=lambda: NOW) as app:
        rows = await app.store.list_deliveries(limit=100)
        stats = await app.worker.run_until_idle()
        remaining = {r.due_at for r in await app.store.list_deliveries(state=State.PENDING)}
    due = {r.due_at for r in rows}
    assert due == {
        datetime(2026, 3, 2, 9, 30, tzinfo=TZ).timestamp(),
        datetime(2026, 3, 3, 9, 30, tzinfo=TZ).timestamp(),  # naive: the service's zone
        NOW,  # a past send_at means now
    }
    assert stats.sent == 2  # only the one due now went out
    assert len(remaining) == 2


async def test_a_hook_whose_secret_is_not_set_is_503(
    service: tuple[App, Client], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app, client = service
    monkeypatch.delenv(HOOK_ENV)
    monkeypatch.chdir(tmp_path)  # no .env here either
    assert app.reload()
    status, body = await post_hook(client, PAYLOAD)
    assert status == 503
    assert body["error"] == "hook not configured"
    assert SECRET not in json.dumps(body)


async def test_a_hook_accepted_by_the_running_service_is_delivered(
    make_settings: MakeSettings, hook_secret_env: None
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = make_settings(http=HttpSettings(port=port))
    stop, ready = asyncio.Event(), asyncio.Event()
    async with App(settings) as app:
        task = asyncio.create_task(app.run(stop, ready=ready, serve=start_http))
        await asyncio.wait_for(ready.wait(), 10)
        body = body_of(PAYLOAD)
        now = time.time()
        async with ClientSession() as session:
            async with session.post(
                f"http://127.0.0.1:{port}/hooks/visit-request",
                data=body,
                headers=signed(body, "live", ts=now),
            ) as resp:
                assert resp.status == 202
            deadline = time.monotonic() + 10
            while len(list((settings.mail_drop_dir / "new").glob("*"))) < 2:
                assert time.monotonic() < deadline, "not delivered in time"
                await asyncio.sleep(0.05)
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert await resp.json() == {"status": "ok"}
        stop.set()
        await asyncio.wait_for(task, 15)
    sent = [r for r in await ledger(settings) if r.state is State.SENT]
    assert len(sent) == 2


# --- admin API ------------------------------------------------------------------------------


ADMIN_ROUTES = [
    ("GET", "/api/events"),
    ("GET", "/api/upcoming"),
    ("GET", "/api/deliveries"),
    ("POST", "/api/preview"),
    ("POST", "/api/events/security-day/send"),
    ("GET", "/api/config"),
    ("GET", "/calendar.ics"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic admin-token-for-tests"},
        {"Authorization": "Bearer 令牌"},
    ],
    ids=["none", "wrong", "basic", "non-ascii"],
)
async def test_admin_routes_need_the_bearer_token(
    service: tuple[App, Client], method: str, path: str, headers: dict[str, str]
) -> None:
    app, client = service
    resp = await client.request(method, path, headers=headers, json={"event": "security-day"})
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"
    assert await ledger(app.settings) == []


async def test_the_admin_api_is_disabled_without_a_token(
    make_settings: MakeSettings,
) -> None:
    async with App(make_settings(admin_token=None), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            resp = await client.get("/api/events", headers=ADMIN)
            assert resp.status == 503
            assert (await resp.json())["error"] == "admin API disabled"


async def test_events_lists_events_with_their_next_occurrence(
    service: tuple[App, Client],
) -> None:
    _, client = service
    body = await (await client.get("/api/events", headers=ADMIN)).json()
    (event,) = body["events"]
    assert event["id"] == "security-day"
    assert event["next"] == {"start": "2026-04-15", "end": "2026-04-15"}
    assert [r["id"] for r in event["reminders"]] == ["before-10d", "before-3wd", "on-start"]
    assert body["hooks"] == [
        {"id": "visit-request", "template": "visit-notice", "audience": "staff"}
    ]


async def test_upcoming_returns_the_cli_objects(service: tuple[App, Client]) -> None:
    _, client = service
    body = await (await client.get("/api/upcoming", headers=ADMIN)).json()
    assert body["from"] == "2026-03-01"
    assert body["to"] == "2026-04-30"
    assert [(p["reminder"], p["send_at"][:10]) for p in body["upcoming"]] == [
        ("before-10d", "2026-04-03"),
        ("before-3wd", "2026-04-10"),
        ("on-start", "2026-04-15"),
    ]
    assert body["upcoming"][0]["recipients"] == 2
    assert [p["provisional"] for p in body["upcoming"]] == [False, False, False]  # 2026 data
    narrow = await (
        await client.get("/api/upcoming?from=2026-04-10&to=2026-04-10", headers=ADMIN)
    ).json()
    assert [p["reminder"] for p in narrow["upcoming"]] == ["before-3wd"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("from=tomorrow", 400),
        ("to=2026-02-30", 400),
        ("from=2026-05-01&to=2026-04-01", 422),
        ("from=2026-01-01&to=2030-01-01", 422),
        ("from=0001-01-01", 422),
    ],
)
async def test_upcoming_rejects_bad_windows(
    service: tuple[App, Client], query: str, status: int
) -> None:
    _, client = service
    resp = await client.get(f"/api/upcoming?{query}", headers=ADMIN)
    assert resp.status == status
    assert set(await resp.json()) >= {"error", "detail"}


async def test_deliveries_are_listed_without_bodies_and_filtered(
    service: tuple[App, Client],
) -> None:
    _, client = service
    await post_hook(client, PAYLOAD)
    resp = await client.post("/api/events/security-day/send", headers=ADMIN)
    assert resp.status == 200
    every = (await (await client.get("/api/deliveries", headers=ADMIN)).json())["deliveries"]
    assert len(every) == 4
    assert all("message" not in d and "body" not in d for d in every)
    assert {d["subject"] for d in every} >= {"来访申请：张三（ACME 公司）"}
    hooks = await client.get("/api/deliveries?event=hook:visit-request&limit=1", headers=ADMIN)
    (one,) = (await hooks.json())["deliveries"]
    assert one["event"] == "hook:visit-request"
    assert one["state"] == "pending"
    none = await client.get("/api/deliveries?state=sent", headers=ADMIN)
    assert (await none.json())["deliveries"] == []


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("state=lost", 400),
        ("limit=abc", 400),
        ("limit=-1", 400),
        ("limit=0", 422),
        ("limit=100000", 422),
    ],
)
async def test_deliveries_reject_bad_filters(
    service: tuple[App, Client], query: str, status: int
) -> None:
    _, client = service
    resp = await client.get(f"/api/deliveries?{query}", headers=ADMIN)
    assert resp.status == status


async def test_preview_renders_without_sending(service: tuple[App, Client]) -> None:
    app, client = service
    resp = await client.post(
        "/api/preview",
        headers=ADMIN,
        json={"event": "security-day", "reminder": "before-10d", "recipient": STAFF[1]},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["subject"] == "【提醒】全民国家安全教育日（2026年4月15日）"
    assert body["text"].startswith("办公室：")
    assert "提前10天" in body["text"]
    assert body["html"].startswith("<p>办公室")
    assert body["recipient"] == STAFF[1]
    assert await ledger(app.settings) == []


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"event": "nope"}, 404),
        ({}, 422),
        ({"event": 5}, 422),
        ({"event": "security-day", "reminder": "nope"}, 422),
        ({"event": "security-day", "recipient": "stranger@example.com"}, 422),
        ({"event": "security-day", "date": "2026-04-16"}, 422),
        ({"event": "security-day", "date": "soon"}, 400),
        ("security-day", 400),
    ],
)
async def test_preview_rejects_bad_requests(
    service: tuple[App, Client], payload: object, status: int
) -> None:
    _, client = service
    resp = await client.post("/api/preview", headers=ADMIN, json=payload)
    assert resp.status == status
    assert "detail" in await resp.json()


async def test_send_is_idempotent_unless_again(service: tuple[App, Client]) -> None:
    app, client = service
    path = "/api/events/security-day/send"
    first = await (await client.post(path, headers=ADMIN, json={})).json()
    second = await (await client.post(path, headers=ADMIN)).json()
    again = await (await client.post(path, headers=ADMIN, json={"again": True})).json()
    assert first == {"created": 2, "audience": 2}
    assert second == {"created": 0, "audience": 2}
    assert again == {"created": 2, "audience": 2}
    assert len(await ledger(app.settings)) == 4


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/api/events/nope/send", {}, 404),
        ("/api/events/security-day/send", {"again": "yes"}, 422),
        ("/api/events/security-day/send", {"reminder": "nope"}, 422),
        ("/api/events/security-day/send", [], 400),
    ],
)
async def test_send_rejects_bad_requests(
    service: tuple[App, Client], path: str, payload: object, status: int
) -> None:
    _, client = service
    resp = await client.post(path, headers=ADMIN, json=payload)
    assert resp.status == status


async def test_config_shows_errors_and_warnings(service: tuple[App, Client]) -> None:
    app, client = service
    app.config_errors = ["schedules/main.yaml: events[0].date: bad"]
    body = await (await client.get("/api/config", headers=ADMIN)).json()
    assert body["errors"] == ["schedules/main.yaml: events[0].date: bad"]
    assert isinstance(body["warnings"], list)


# --- calendar feed --------------------------------------------------------------------------


async def test_the_calendar_feed_has_one_all_day_event_per_occurrence(
    service: tuple[App, Client],
) -> None:
    _, client = service
    resp = await client.get("/calendar.ics?token=calendar-token-for-tests")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/calendar; charset=utf-8"
    cal = icalendar.Calendar.from_ical(await resp.read())
    events = list(cal.walk("VEVENT"))
    assert len(events) == 1  # 2026-04-15 only: 2027-04-15 is beyond 12 months of 2026-03-01
    (ev,) = events
    assert str(ev["UID"]) == "security-day-2026-04-15@notifier"
    assert str(ev["SUMMARY"]) == "全民国家安全教育日"
    assert ev.decoded("DTSTART") == date(2026, 4, 15)
    assert ev.decoded("DTEND") == date(2026, 4, 16)
    assert "提前10天 (before-10d): 2026-04-03 09:00" in str(ev["DESCRIPTION"])
    alarms = list(ev.walk("VALARM"))
    assert len(alarms) == 2  # the two `before` reminders
    assert {a.decoded("TRIGGER") for a in alarms} == {
        datetime(2026, 4, 3, 9, tzinfo=TZ) - datetime(2026, 4, 15, tzinfo=TZ),
        datetime(2026, 4, 10, 9, tzinfo=TZ) - datetime(2026, 4, 15, tzinfo=TZ),
    }
    # Stable UIDs: a second fetch describes the same events.
    again = icalendar.Calendar.from_ical(
        await (await client.get("/calendar.ics?token=calendar-token-for-tests")).read()
    )
    assert [str(e["UID"]) for e in again.walk("VEVENT")] == [str(ev["UID"])]


async def test_the_calendar_feed_needs_the_token(service: tuple[App, Client]) -> None:
    _, client = service
    assert (await client.get("/calendar.ics")).status == 401
    assert (await client.get("/calendar.ics?token=wrong")).status == 401


async def test_the_calendar_feed_covers_a_monthly_event(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings()
    write_schedule(
        settings.schedules_dir,
        """\
        audiences:
          staff: [{email: a@example.com, name: 甲}]
        events:
          - {id: monthly, title: 月报, rrule: "FREQ=MONTHLY;BYMONTHDAY=20", duration: 2,
             reminders: [{on: start}]}
        """,
    )
    async with App(settings, clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            raw = await (await client.get("/calendar.ics?token=calendar-token-for-tests")).read()
    events = list(icalendar.Calendar.from_ical(raw).walk("VEVENT"))
    assert len(events) == 12
    assert events[0].decoded("DTSTART") == date(2026, 3, 20)
    assert events[0].decoded("DTEND") == date(2026, 3, 22)  # two days, end exclusive
    assert not list(events[0].walk("VALARM"))


# --- unsubscribe ----------------------------------------------------------------------------


async def test_get_unsubscribe_only_shows_a_form(service: tuple[App, Client]) -> None:
    app, client = service
    token = unsubscribe_token(b"unsubscribe-secret", "Someone@Example.com")
    resp = await client.get(f"/unsubscribe?token={token}")
    assert resp.status == 200
    page = await resp.text()
    assert "so•••@example.com" in page  # masked: whoever holds the link learns little
    assert "someone@" not in page
    assert 'method="post"' in page
    assert await app.store.unsubscribed(["someone@example.com"]) == set()


async def test_one_click_post_unsubscribes(service: tuple[App, Client]) -> None:
    app, client = service
    token = unsubscribe_token(app.outbox.unsubscribe_secret, "someone@example.com")
    resp = await client.post(f"/unsubscribe?token={token}", data={"List-Unsubscribe": "One-Click"})
    assert resp.status == 200
    assert await resp.json() == {"unsubscribed": "so•••@example.com"}
    assert await app.store.unsubscribed(["someone@example.com"]) == {"someone@example.com"}
    page = await client.post(f"/unsubscribe?token={token}", data={"page": "1"})
    assert page.status == 200
    assert "已退订" in await page.text()


async def test_the_unsubscribe_pages_cannot_be_framed_by_another_site(
    service: tuple[App, Client],
) -> None:
    app, client = service
    token = unsubscribe_token(app.outbox.unsubscribe_secret, "someone@example.com")
    confirm = await client.get(f"/unsubscribe?token={token}")
    done = await client.post(f"/unsubscribe?token={token}", data={"page": "1"})
    for resp in (confirm, done):
        assert resp.status == 200
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "no-referrer"  # the token is in the URL


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("someone@example.com", "so•••@example.com"),
        ("abc@example.com", "a•••@example.com"),
        ("ab@example.com", "•••@example.com"),
        ("a@example.com", "•••@example.com"),
        ("zhang.wei.fazhichu@example.com", "zha•••@example.com"),
    ],
)
def test_a_masked_address_shows_at_most_a_third_of_its_local_part(
    address: str, masked: str
) -> None:
    assert mask_address(address) == masked


@pytest.mark.parametrize("token", ["", "someone@example.com.0000", "nodot", "邮件.abc"])
async def test_a_bad_unsubscribe_token_is_400(service: tuple[App, Client], token: str) -> None:
    _, client = service
    for method in ("GET", "POST"):
        resp = await client.request(method, "/unsubscribe", params={"token": token})
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid token"


# --- operations -----------------------------------------------------------------------------


async def test_health_and_readiness(service: tuple[App, Client]) -> None:
    app, client = service
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status == 200
    app.config_errors = ["schedules/main.yaml: broken"]
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["error"] == "not ready"
    assert "configuration" in body["detail"]


async def test_readyz_is_503_when_the_database_is_gone(service: tuple[App, Client]) -> None:
    app, client = service

    async def unreachable() -> None:
        raise OSError("gone")

    app.store.ping = unreachable  # type: ignore[method-assign]
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["components"] == {"database": "unreachable"}
    detailed = await client.get("/readyz", headers=ADMIN)
    assert "database unreachable (OSError)" in (await detailed.json())["detail"]


# What a database and a chat platform say, with what an anonymous caller must not learn.
PLATFORM_TEXTS = (
    "database is locked: /srv/notifier/var/notifier.db (sqlite3.OperationalError)",
    "93000 invalid webhook url, hint: [1700000000_abc] from ip: 10.1.2.3",
)


async def test_anonymous_readyz_names_components_and_states_not_their_errors(
    service: tuple[App, Client],
) -> None:
    app, client = service
    app.planning.error = PLATFORM_TEXTS[0]
    app.channels.statuses["wecom-group"] = ChannelStatus(PLATFORM_TEXTS[1], disabled=True)
    app.config_errors = ["schedules/main.yaml: events[0].date: bad"]
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503 and body["error"] == "not ready"
    assert body["components"] == {
        "database": "unavailable",
        "configuration": "invalid, running the last good one",
        "channel wecom-group": "disabled",
    }
    text = json.dumps(body, ensure_ascii=False)
    for secret in ("/srv/notifier", "10.1.2.3", "93000", "main.yaml", "locked"):
        assert secret not in text
    detailed = await (await client.get("/readyz", headers=ADMIN)).json()  # the admin: all of it
    assert all(t in detailed["detail"] for t in PLATFORM_TEXTS)
    wrong = await client.get("/readyz", headers={"Authorization": "Bearer wrong"})
    assert wrong.status == 401 and "10.1.2.3" not in await wrong.text()


async def test_metrics_are_prometheus_text(service: tuple[App, Client]) -> None:
    _, client = service
    await post_hook(client, PAYLOAD)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    for name in (
        "notifier_deliveries",
        "notifier_send_attempts",
        "notifier_send_seconds",
        "notifier_webhook_requests_total",
        "notifier_scheduler_lag_seconds",
    ):
        assert name in text
    assert 'notifier_webhook_requests_total{hook="visit-request",status="202"} 1.0' in text
    assert 'notifier_deliveries{channel="email",state="pending"} 2.0' in text


async def test_unknown_paths_and_methods_answer_json(service: tuple[App, Client]) -> None:
    _, client = service
    missing = await client.get("/nope")
    assert missing.status == 404
    assert set(await missing.json()) == {"error", "detail"}
    wrong = await client.get("/hooks/visit-request")
    assert wrong.status == 405
    assert "POST" in wrong.headers["Allow"]
    assert (await wrong.json())["error"] == "method not allowed"


async def test_an_unexpected_error_is_a_json_500_without_traceback(
    service: tuple[App, Client], caplog: pytest.LogCaptureFixture
) -> None:
    app, client = service

    async def boom(**_: Any) -> list[Any]:
        raise RuntimeError("secret internals")

    app.store.list_deliveries = boom  # type: ignore[method-assign]
    resp = await client.get("/api/deliveries", headers=ADMIN)
    assert resp.status == 500
    text = await resp.text()
    assert "Traceback" not in text and "secret internals" not in text
    assert json.loads(text)["error"] == "internal error"
    assert any(getattr(r, "action", None) == "http_error" for r in caplog.records)


async def test_the_openapi_description_lists_every_route(service: tuple[App, Client]) -> None:
    _, client = service
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    served = {
        (r.method, r.resource.canonical)
        for r in client.server.app.router.routes()
        if r.resource is not None
        and r.method != "HEAD"
        and not is_console_route(r.resource.canonical)  # HTML pages: not part of the JSON API
    }
    assert routes == served


async def test_the_shipped_config_serves_events_and_a_feed(
    hook_secret_env: None, tmp_path: Path
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        schedules_dir=ROOT / "schedules",
        templates_dir=ROOT / "templates",
        database_url=f"sqlite:///{tmp_path / 'n.db'}",
        mail_drop_dir=tmp_path / "mail",
        admin_token=SecretStr("shipped-admin-token-0123"),
        calendar_token=SecretStr("shipped-calendar-token-0123"),
        unsubscribe_secret=SecretStr("shipped-unsubscribe-secret-0123"),
        http=HttpSettings(port=0),
        watch=False,
    )
    try:
        load_config(settings, now=datetime.now(TZ))
    except ConfigError as exc:
        pytest.skip(f"the shipped config does not validate yet: {exc.errors[:1]}")
    async with App(settings) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            headers = {"Authorization": "Bearer shipped-admin-token-0123"}
            events = await client.get("/api/events", headers=headers)
            assert events.status == 200
            assert (await events.json())["events"]
            feed = await client.get("/calendar.ics?token=shipped-calendar-token-0123")
            assert feed.status == 200
            assert list(icalendar.Calendar.from_ical(await feed.read()).walk("VEVENT"))
            upcoming = await client.get("/api/upcoming", headers=headers)
            assert upcoming.status == 200

"""The suppression list in the admin API: listed with the server's words, and an address taken
off it (audited like the console's removal); unknown addresses and bad input are JSON 4xx."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

from aiohttp.test_utils import TestClient, TestServer

from notifier.ledger.models import State
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import Faults, SmtpServer
from tests.test_bounces_at_send import ADMIN, GONE, SCHEDULE


async def test_the_api_lists_a_bounced_address_with_its_reason_excerpt_times_and_row(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server(Faults(reject={GONE}))
    settings = make_settings(smtp=smtp_settings(server))
    write_schedule(settings.schedules_dir, SCHEDULE)
    async with App(settings) as app:
        await app.outbox.send_now("outreach", now=app.clock())
        await app.run_until_idle()
        (row,) = await app.store.list_deliveries(state=State.BOUNCED)
        async with TestClient(TestServer(create_web_app(app))) as client:
            resp = await client.get("/api/suppressions", headers=ADMIN)
            body = await resp.json()
            anonymous = await client.get("/api/suppressions")
    assert resp.status == 200
    (entry,) = body["suppressions"]
    assert entry["address"] == GONE
    assert entry["delivery_id"] == row.id and entry["source"] == "smtp"
    assert "550 5.1.1 no such user" in entry["excerpt"] and entry["reason"]
    first = datetime.fromisoformat(entry["first_at"])
    assert first.utcoffset() == settings.tz.utcoffset(first.replace(tzinfo=None))
    assert entry["first_at"] == entry["last_at"]
    assert anonymous.status == 401


async def test_the_limit_keeps_the_latest_bounces_and_a_bad_limit_is_a_json_4xx(
    make_settings: MakeSettings,
) -> None:
    async with App(make_settings()) as app:
        for i in range(3):
            await app.suppressions.suppress(
                f"u{i}@gone.example.com", reason="550 5.1.1", excerpt="no such user",
                source="bounce", delivery_id=None, now=1_800_000_000.0 + i,
            )  # fmt: skip
        async with TestClient(TestServer(create_web_app(app))) as client:
            two = await (await client.get("/api/suppressions?limit=2", headers=ADMIN)).json()
            zero = await client.get("/api/suppressions?limit=0", headers=ADMIN)
            word = await client.get("/api/suppressions?limit=many", headers=ADMIN)
            zero_body, word_body = await zero.json(), await word.json()
    assert [e["address"] for e in two["suppressions"]] == [
        "u2@gone.example.com",
        "u1@gone.example.com",
    ]
    assert zero.status == 422 and "limit" in zero_body["detail"]
    assert word.status == 400 and "limit" in word_body["detail"]


async def test_deleting_an_address_takes_it_off_audited_and_an_unknown_one_is_a_404(
    make_settings: MakeSettings,
) -> None:
    async with App(make_settings()) as app:
        await app.suppressions.suppress(
            GONE, reason="550 5.1.1", excerpt="no such user", source="smtp", delivery_id=None,
            now=app.clock(),
        )  # fmt: skip
        async with TestClient(TestServer(create_web_app(app))) as client:
            anonymous = await client.delete(f"/api/suppressions/{quote(GONE)}")
            removed = await client.delete(f"/api/suppressions/{quote(GONE.upper())}", headers=ADMIN)
            removed_body = await removed.json()
            again = await client.delete(f"/api/suppressions/{quote(GONE)}", headers=ADMIN)
            again_body = await again.json()
            too_long = await client.delete(f"/api/suppressions/{'a' * 300}", headers=ADMIN)
            too_long_body = await too_long.json()
            blank = await client.delete("/api/suppressions/%20", headers=ADMIN)
            listed = await (await client.get("/api/suppressions", headers=ADMIN)).json()
            audit = await app.console.audit_entries(limit=5)
    assert anonymous.status == 401
    assert removed.status == 200 and removed_body == {"address": GONE, "removed": True}
    assert listed == {"suppressions": []}
    assert again.status == 404 and again_body["error"] == "not suppressed"
    assert too_long.status == 422 and "address" in too_long_body["detail"]
    assert blank.status == 422
    (entry,) = [a for a in audit if a.action == "unsuppress"]
    assert entry.target == f"email:{GONE}" and entry.role == "admin-api"
    assert entry.detail == "admin API"

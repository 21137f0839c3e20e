"""Unsubscribe links carry an opaque token; links sent before in the `<email>.<mac>` form work."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from notifier.compose.tokens import unsubscribe_token, verify_unsubscribe_token
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings

SECRET = b"unsubscribe-secret"  # conftest's NOTIFIER_UNSUBSCRIBE_SECRET


def legacy_token(secret: bytes, address: str) -> str:
    """What the previous release put in links (written out here, as those links were)."""
    addr = address.lower()
    return f"{addr}.{hmac.new(secret, addr.encode(), hashlib.sha256).hexdigest()[:32]}"


@pytest.mark.parametrize(
    "address", ["someone@example.com", "Zhang.Wei+news@Trade.Example.cn", "李@例子.中国"]
)
def test_a_token_names_its_address_without_showing_it(address: str) -> None:
    token = unsubscribe_token(SECRET, address)
    assert verify_unsubscribe_token(SECRET, token) == address.lower()
    local, _, domain = address.lower().partition("@")
    assert local not in token.lower() and domain.split(".")[0] not in token.lower()
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)  # URL-safe as is
    assert unsubscribe_token(SECRET, address) == token  # deterministic: same message twice


def test_tokens_differ_by_address_and_by_secret() -> None:
    a, b = unsubscribe_token(SECRET, "a@example.com"), unsubscribe_token(SECRET, "b@example.com")
    assert a != b
    assert unsubscribe_token(b"another-secret", "a@example.com") != a
    assert verify_unsubscribe_token(b"another-secret", a) is None


def test_links_sent_in_the_old_form_still_verify_and_forged_ones_do_not() -> None:
    old = legacy_token(SECRET, "Someone@Example.com")
    assert verify_unsubscribe_token(SECRET, old) == "someone@example.com"
    assert verify_unsubscribe_token(SECRET, old.replace("someone@", "boss@")) is None
    assert verify_unsubscribe_token(b"another-secret", old) is None


async def test_an_old_link_unsubscribes_through_the_http_side(
    make_settings: MakeSettings,
) -> None:
    async with App(make_settings()) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            c: TestClient[Any, Any] = client
            old = legacy_token(app.outbox.unsubscribe_secret, "old.link@example.com")
            page = await c.get("/unsubscribe", params={"token": old})
            assert page.status == 200 and "ol•••@example.com" in await page.text()
            done = await c.post("/unsubscribe", params={"token": old})
            assert done.status == 200
            assert await app.store.unsubscribed(["old.link@example.com"]) == {
                "old.link@example.com"
            }
            new = unsubscribe_token(app.outbox.unsubscribe_secret, "new.link@example.com")
            assert (await c.post("/unsubscribe", params={"token": new})).status == 200
            assert await app.store.unsubscribed(["new.link@example.com"]) == {
                "new.link@example.com"
            }

"""Standard Webhooks signatures, checked against the reference `standardwebhooks` package."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from notifier.signing import SignatureError, secret_keys, sign, verify

SECRET = "whsec_" + base64.b64encode(b"a" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()
NOW = 1_770_000_000
BODY = b'{"visitor": "\xe5\xbc\xa0\xe4\xb8\x89", "org": "ACME"}'


def reference_headers(
    secret: str = SECRET, msg_id: str = "msg_1", ts: int = NOW, body: bytes = BODY
) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_our_signature_is_the_reference_signature() -> None:
    ours = sign(SECRET, "msg_1", NOW, BODY)
    assert ours == reference_headers()["webhook-signature"]


def test_a_reference_signed_request_verifies_and_returns_its_id() -> None:
    assert verify(SECRET, reference_headers(), BODY, now=NOW) == "msg_1"


def test_the_reference_verifier_accepts_our_signature() -> None:
    ts = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(SECRET, "msg_2", ts, BODY),
    }
    assert Webhook(SECRET).verify(BODY, headers) == {"visitor": "张三", "org": "ACME"}


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in reference_headers().items()}
    assert verify(SECRET, headers, BODY, now=NOW) == "msg_1"


def test_sender_key_rotation_any_listed_signature_may_match() -> None:
    old = reference_headers(secret=OLD_SECRET)["webhook-signature"]
    new = reference_headers()["webhook-signature"]
    headers = {**reference_headers(), "webhook-signature": f"{old} {new}"}
    assert verify(SECRET, headers, BODY, now=NOW) == "msg_1"


def test_receiver_key_rotation_several_secrets_in_one_variable() -> None:
    headers = reference_headers(secret=OLD_SECRET)
    assert verify(f"{SECRET} {OLD_SECRET}", headers, BODY, now=NOW) == "msg_1"
    assert verify([SECRET, OLD_SECRET], headers, BODY, now=NOW) == "msg_1"
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (86400, False)],
)
def test_timestamps_are_accepted_within_five_minutes_only(offset: int, ok: bool) -> None:
    headers = reference_headers(ts=NOW + offset)
    if ok:
        assert verify(SECRET, headers, BODY, now=NOW) == "msg_1"
    else:
        with pytest.raises(SignatureError, match=r"too (old|new)"):
            verify(SECRET, headers, BODY, now=NOW)


def test_a_changed_body_fails() -> None:
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(SECRET, reference_headers(), BODY + b" ", now=NOW)


def test_a_changed_id_fails() -> None:
    headers = {**reference_headers(), "webhook-id": "msg_other"}
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-id": ""}, "missing header: webhook-id"),
        ({"webhook-timestamp": ""}, "missing header: webhook-timestamp"),
        ({"webhook-signature": ""}, "missing header: webhook-signature"),
        ({"webhook-timestamp": "soon"}, "integer unix seconds"),
        ({"webhook-timestamp": "1e9"}, "integer unix seconds"),
        ({"webhook-timestamp": "-5"}, "integer unix seconds"),
        ({"webhook-signature": "v2,abc"}, "no v1 signature"),
        ({"webhook-signature": "v1,!!notbase64!!"}, "no v1 signature"),
        ({"webhook-signature": "garbage"}, "no v1 signature"),
        ({"webhook-id": "x" * 201}, "printable"),
        ({"webhook-id": "a\x00b"}, "printable"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(change: dict[str, str], reason: str) -> None:
    headers = {**reference_headers(), **change}
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, headers, BODY, now=NOW)


def test_a_wrong_signature_of_the_right_shape_fails() -> None:
    forged = "v1," + base64.b64encode(b"\0" * 32).decode()
    headers = {**reference_headers(), "webhook-signature": forged}
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(SECRET, headers, BODY, now=NOW)


def test_secrets_must_be_base64() -> None:
    with pytest.raises(ValueError, match="base64"):
        secret_keys("whsec_%%%")
    with pytest.raises(ValueError, match="empty"):
        secret_keys([b""])
    assert secret_keys(f" {SECRET}  {OLD_SECRET} ") == [b"a" * 32, b"b" * 32]

"""SMTP connection security against a real aiosmtpd server, with and without STARTTLS.

`auto` (the default) upgrades when the server offers STARTTLS and stays plain otherwise; a
password never goes over a plain connection unless `allow_plain_auth` says so. The servers
here accept AUTH even without TLS (`auth_require_tls=False`), so that a client which sent a
password in clear would be seen doing it.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from notifier.config import SmtpSettings
from notifier.ledger.models import State
from notifier.service import App
from tests.conftest import MakeSettings
from tests.smtp_server import Sink, free_port

USER, PASSWORD = "notifier", "s3cret-password"


@dataclass
class Cert:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1, made here (nothing shipped, nothing fetched)."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifier test SMTP")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Cert(directory / "cert.pem", directory / "key.pem")
    paths.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class SecureSink(Sink):
    """A Sink that also records each AUTH (and whether it came over TLS) and each DATA's TLS."""

    auths: list[tuple[str, bool]] = field(default_factory=list)
    data_over_tls: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_over_tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.auths.append((data.password.decode(), session.ssl is not None))
        ok = (data.login.decode(), data.password.decode()) == (USER, PASSWORD)
        return AuthResult(success=ok)


@dataclass
class Server:
    sink: SecureSink
    port: int
    controller: Controller


@pytest.fixture
def start_server(cert: Cert) -> Iterator[Any]:
    started: list[Controller] = []

    def start(*, starttls: bool) -> Server:
        sink = SecureSink()
        port = free_port()
        kwargs: dict[str, Any] = {"authenticator": sink.authenticate, "auth_require_tls": False}
        if starttls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert.cert, cert.key)
            kwargs["tls_context"] = context
        controller = Controller(sink, hostname="127.0.0.1", port=port, ready_timeout=5, **kwargs)
        controller.start()
        started.append(controller)
        return Server(sink, port, controller)

    yield start
    for controller in started:
        controller.stop()


def smtp(server: Server, cert: Cert, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "timeout": 2.0,
        "ca_file": cert.cert,  # the client trusts the test's certificate, nothing else
    }
    values.update(overrides)
    return SmtpSettings(**values)


async def send_all(settings: Any) -> list[Any]:
    async with App(settings) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        await app.worker.run_until_idle()
        return await app.store.list_deliveries()


def test_auto_is_the_default() -> None:
    assert SmtpSettings().security == "auto"
    assert SmtpSettings().allow_plain_auth is False


async def test_auto_upgrades_with_starttls_when_the_server_offers_it(
    make_settings: MakeSettings, start_server: Any, cert: Cert
) -> None:
    server = start_server(starttls=True)
    creds = {"username": USER, "password": SecretStr(PASSWORD)}
    rows = await send_all(make_settings(smtp=smtp(server, cert, **creds)))
    assert {r.state for r in rows} == {State.SENT}
    assert server.sink.data_over_tls == [True, True]
    assert server.sink.auths and all(over_tls for _, over_tls in server.sink.auths)


async def test_auto_sends_plain_to_a_server_without_starttls_when_there_is_no_password(
    make_settings: MakeSettings, start_server: Any, cert: Cert
) -> None:
    server = start_server(starttls=False)
    rows = await send_all(make_settings(smtp=smtp(server, cert)))
    assert {r.state for r in rows} == {State.SENT}
    assert server.sink.data_over_tls == [False, False]


async def test_auto_never_sends_a_password_in_clear(
    make_settings: MakeSettings, start_server: Any, cert: Cert
) -> None:
    server = start_server(starttls=False)
    creds = {"username": USER, "password": SecretStr(PASSWORD)}
    rows = await send_all(make_settings(smtp=smtp(server, cert, **creds)))
    assert server.sink.auths == []  # the password never left the client
    assert server.sink.messages == []
    assert {r.state for r in rows} == {State.PENDING}  # kept, retried later: nothing lost
    assert all("refusing to send the password in clear" in (r.last_error or "") for r in rows)
    assert all("NOTIFIER_SMTP__ALLOW_PLAIN_AUTH" in (r.last_error or "") for r in rows)


async def test_plain_auth_is_sent_only_when_allowed_explicitly(
    make_settings: MakeSettings, start_server: Any, cert: Cert
) -> None:
    server = start_server(starttls=False)
    creds = {"username": USER, "password": SecretStr(PASSWORD), "allow_plain_auth": True}
    rows = await send_all(make_settings(smtp=smtp(server, cert, **creds)))
    assert {r.state for r in rows} == {State.SENT}
    assert server.sink.auths and all(not over_tls for _, over_tls in server.sink.auths)


async def test_none_stays_plain_even_when_the_server_offers_starttls(
    make_settings: MakeSettings, start_server: Any, cert: Cert
) -> None:
    server = start_server(starttls=True)
    rows = await send_all(make_settings(smtp=smtp(server, cert, security="none")))
    assert {r.state for r in rows} == {State.SENT}
    assert server.sink.data_over_tls == [False, False]


async def test_starttls_insists_on_it_and_a_server_without_it_gets_nothing(
    make_settings: MakeSettings, start_server: Any, cert: Cert
) -> None:
    server = start_server(starttls=False)
    rows = await send_all(make_settings(smtp=smtp(server, cert, security="starttls")))
    assert server.sink.messages == []
    assert {r.state for r in rows} == {State.PENDING}
    assert all("STARTTLS" in (r.last_error or "") for r in rows)


async def test_a_certificate_the_client_does_not_trust_stops_the_send(
    make_settings: MakeSettings, start_server: Any, cert: Cert
) -> None:
    server = start_server(starttls=True)
    rows = await send_all(make_settings(smtp=smtp(server, cert, ca_file=None)))
    assert server.sink.messages == []
    assert {r.state for r in rows} == {State.PENDING}
    assert all("CERTIFICATE_VERIFY_FAILED" in (r.last_error or "") for r in rows)


def test_none_with_a_username_is_refused_at_start_naming_the_settings() -> None:
    with pytest.raises(ValidationError) as caught:
        SmtpSettings(host="relay.example", security="none", username=USER)
    text = str(caught.value)
    assert "NOTIFIER_SMTP__SECURITY=none" in text
    assert "NOTIFIER_SMTP__ALLOW_PLAIN_AUTH" in text
    relay = SmtpSettings(
        host="relay.example", security="none", username=USER, allow_plain_auth=True
    )
    assert relay.allow_plain_auth

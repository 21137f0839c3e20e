"""NOTIFIER_PUBLIC_URL, the base of unsubscribe links: unset, it follows the HTTP listener."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from notifier.config import HttpSettings, Settings
from notifier.service import App
from tests.conftest import MakeSettings, smtp_settings
from tests.smtp_server import SmtpServer
from tests.test_outreach import outreach_settings


def from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_unset_it_follows_the_http_port_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert from_env(monkeypatch).public_url == "http://127.0.0.1:8080"
    assert from_env(monkeypatch, NOTIFIER_HTTP__PORT="9090").public_url == "http://127.0.0.1:9090"
    named = from_env(monkeypatch, NOTIFIER_HTTP__HOST="10.1.2.3")
    assert named.public_url == "http://10.1.2.3:9090"
    # Listening on every address: a link cannot name "0.0.0.0", so it names this machine.
    assert from_env(monkeypatch, NOTIFIER_HTTP__HOST="0.0.0.0").public_url == (
        "http://127.0.0.1:9090"
    )
    assert from_env(monkeypatch, NOTIFIER_HTTP__HOST="::1").public_url == "http://[::1]:9090"


def test_a_public_url_that_is_set_is_kept_whatever_the_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = from_env(
        monkeypatch,
        NOTIFIER_HTTP__PORT="9090",
        NOTIFIER_PUBLIC_URL="https://notifier.fao.example.com",
    )
    assert settings.public_url == "https://notifier.fao.example.com"


async def test_unsubscribe_links_use_the_port_the_service_listens_on(
    make_settings: MakeSettings, tmp_path: Path, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server()
    outreach_settings(make_settings, tmp_path)
    settings = make_settings(smtp=smtp_settings(server), http=HttpSettings(port=9090))
    async with App(settings) as app:
        await app.outbox.send_now("apec-card", now=app.clock())
        await app.worker.run_until_idle()
    (message, *_) = server.sink.messages
    url = str(message["List-Unsubscribe"]).strip("<>")
    assert url.startswith("http://127.0.0.1:9090/unsubscribe?token="), url

"""Secrets: published placeholders are refused; hook secrets are read at start and at reload."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from notifier.cli.main import main
from notifier.config import Settings, SmtpSettings
from notifier.errors import ConfigError
from notifier.ledger.models import State
from notifier.masking import Masker, smtp_auth_forms
from notifier.secret_checks import MIN_TOKEN_CHARS
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import ROOT, MakeSettings
from tests.robots import Platforms
from tests.smtp_server import Sink, free_port
from tests.test_channels import WECOM_KEY, chat_rows, platforms, use_channel
from tests.test_web import HOOK_ENV, NOW, PAYLOAD, SECRET, body_of, signed

__all__ = ["platforms"]  # a fixture

NEW_SECRET = "whsec_" + base64.b64encode(b"a-rotated-secret-for-the-hook-01").decode()
EXAMPLE_HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # standardwebhooks.com's example


def env_example() -> dict[str, str]:
    """The active assignments of docker/.env.example (what a careless copy would run with)."""
    text = (ROOT / "docker" / ".env.example").read_text(encoding="utf-8")
    return dict(re.findall(r"^(NOTIFIER_[A-Z0-9_]+)=(.*)$", text, re.MULTILINE))


@pytest.mark.parametrize(
    ("setting", "value", "variable"),
    [
        ("admin_token", "change-me-admin-token", "NOTIFIER_ADMIN_TOKEN"),
        ("unsubscribe_secret", "change-me-unsubscribe-secret", "NOTIFIER_UNSUBSCRIBE_SECRET"),
        ("calendar_token", "CHANGE-ME", "NOTIFIER_CALENDAR_TOKEN"),
    ],
)
async def test_a_placeholder_secret_stops_the_start_naming_the_variable(
    make_settings: MakeSettings, setting: str, value: str, variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        async with App(make_settings(**{setting: SecretStr(value)})):
            pass
    assert len(caught.value.errors) == 1
    assert caught.value.errors[0].startswith(f"{variable}: still the published example value")


async def test_the_standard_webhooks_example_secret_is_refused_for_a_hook(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOK_ENV, f"{SECRET} {EXAMPLE_HOOK_SECRET}")  # also inside a rotation
    with pytest.raises(ConfigError) as caught:
        async with App(make_settings()):
            pass
    assert caught.value.errors[0].startswith(f"{HOOK_ENV}: still the published example value")
    assert EXAMPLE_HOOK_SECRET not in str(caught.value)


def test_notifier_check_refuses_the_values_of_env_example(
    tmp_path: Path, config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules, templates = config_dirs
    monkeypatch.chdir(tmp_path)
    env = {
        **env_example(),
        "NOTIFIER_SCHEDULES_DIR": str(schedules),
        "NOTIFIER_TEMPLATES_DIR": str(templates),
    }
    result = CliRunner().invoke(main, ["check"], env=env, catch_exceptions=False)
    assert result.exit_code == 1
    for variable in ("NOTIFIER_ADMIN_TOKEN", "NOTIFIER_UNSUBSCRIBE_SECRET", HOOK_ENV):
        assert f"{variable}: still the published example value" in result.output
    env.update(
        NOTIFIER_ADMIN_TOKEN="a-real-admin-token-7f3a",
        NOTIFIER_UNSUBSCRIBE_SECRET="a-real-unsubscribe-secret-91c2",
        NOTIFIER_HOOK_VISIT_REQUEST=SECRET,
    )
    result = CliRunner().invoke(main, ["check"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_the_calendar_token_may_not_be_the_admin_token(make_settings: MakeSettings) -> None:
    with pytest.raises(ValidationError, match="NOTIFIER_CALENDAR_TOKEN must differ"):
        make_settings(calendar_token=SecretStr("admin-token-for-tests"))


@pytest.mark.parametrize("other", ["admin_token", "viewer_token", "calendar_token"])
def test_the_editor_token_may_not_be_another_token(make_settings: MakeSettings, other: str) -> None:
    shared = SecretStr("one-token-for-two-doors")
    with pytest.raises(ValidationError, match="NOTIFIER_EDITOR_TOKEN must differ"):
        make_settings(**{other: shared, "editor_token": shared})


async def hook_status(client: TestClient[Any, Any], secret: str, msg_id: str) -> int:
    body = body_of(PAYLOAD)
    resp = await client.post(
        "/hooks/visit-request", data=body, headers=signed(body, msg_id, secret=secret)
    )
    return resp.status


async def test_a_hook_secret_in_dotenv_is_read_at_start_and_at_reload_not_per_request(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(HOOK_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"{HOOK_ENV}={SECRET}\n", encoding="utf-8")
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            assert await hook_status(client, SECRET, "m1") == 202
            dotenv.write_text(f"{HOOK_ENV}={NEW_SECRET}\n", encoding="utf-8")
            # The file changed, the running service did not re-read it: the old key holds.
            assert await hook_status(client, SECRET, "m2") == 202
            assert await hook_status(client, NEW_SECRET, "m3") == 401
            await asyncio.wait_for(app.request_reload(), 5)  # what SIGHUP does
            assert await hook_status(client, NEW_SECRET, "m4") == 202
            assert await hook_status(client, SECRET, "m5") == 401


async def test_a_reload_that_finds_a_placeholder_keeps_the_last_good_secret(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOK_ENV, SECRET)
    async with App(make_settings(), clock=lambda: NOW) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            monkeypatch.setenv(HOOK_ENV, EXAMPLE_HOOK_SECRET)
            assert not app.reload()
            assert any(HOOK_ENV in line for line in app.config_errors)
            assert await hook_status(client, SECRET, "k1") == 202
            assert await hook_status(client, EXAMPLE_HOOK_SECRET, "k2") == 401
            ready = await client.get("/readyz")
            assert ready.status == 503  # says the files on disk are not what runs
            assert EXAMPLE_HOOK_SECRET not in json.dumps(await ready.json())


# --- floors and placeholders, in any spelling (issue 17, item 7) ------------------------------

EXAMPLE_KEY_BODY = EXAMPLE_HOOK_SECRET.removeprefix("whsec_")


def hook_key(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


async def start_refused(settings: Settings) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        async with App(settings):
            pass
    return caught.value.errors


@pytest.mark.parametrize(
    "value",
    [
        EXAMPLE_KEY_BODY,  # without its whsec_ prefix
        EXAMPLE_HOOK_SECRET + "==",  # with padding
        f"{SECRET} {EXAMPLE_KEY_BODY}",  # inside a rotation list, unprefixed
        f"{SECRET} {EXAMPLE_HOOK_SECRET}==",  # inside a rotation list, padded
        "WHSEC_" + EXAMPLE_KEY_BODY,  # the prefix in upper case
    ],
)
async def test_the_standard_webhooks_example_key_is_refused_in_any_spelling(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(HOOK_ENV, value)
    errors = await start_refused(make_settings())
    assert len(errors) == 1
    assert errors[0].startswith(f"{HOOK_ENV}: still the published example value")
    assert EXAMPLE_KEY_BODY not in errors[0]


@pytest.mark.parametrize(
    "value", ["Change_Me", "CHANGEME", "change.me-admin-token-0123", "please-Change-Me-0123456"]
)
async def test_change_me_in_any_case_and_separator_is_a_placeholder(
    make_settings: MakeSettings, value: str
) -> None:
    errors = await start_refused(make_settings(admin_token=SecretStr(value)))
    assert errors == [errors[0]]
    assert errors[0].startswith("NOTIFIER_ADMIN_TOKEN: still the published example value")


@pytest.mark.parametrize(
    ("setting", "value", "variable"),
    [
        ("admin_token", "a", "NOTIFIER_ADMIN_TOKEN"),
        ("unsubscribe_secret", "u", "NOTIFIER_UNSUBSCRIBE_SECRET"),
        ("calendar_token", "c4l-15-chars-ok", "NOTIFIER_CALENDAR_TOKEN"),  # one short
        ("viewer_token", "v", "NOTIFIER_VIEWER_TOKEN"),
        ("editor_token", "e", "NOTIFIER_EDITOR_TOKEN"),
    ],
)
async def test_a_token_shorter_than_16_characters_stops_the_start_naming_the_variable(
    make_settings: MakeSettings, setting: str, value: str, variable: str
) -> None:
    errors = await start_refused(make_settings(**{setting: SecretStr(value)}))
    assert len(errors) == 1
    assert errors[0].startswith(f"{variable}: shorter than {MIN_TOKEN_CHARS} characters")
    assert "c4l-15" not in errors[0]


@pytest.mark.parametrize("key", [b"k", b"k" * 23, b"k" * 65])
async def test_a_hook_key_outside_24_to_64_bytes_is_refused_even_inside_a_rotation_list(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, key: bytes
) -> None:
    monkeypatch.setenv(HOOK_ENV, f"{SECRET} {hook_key(key)}")
    errors = await start_refused(make_settings())
    assert len(errors) == 1
    assert errors[0].startswith(f"{HOOK_ENV} (entry 2 of 2): the key must be 24 to 64 random")
    assert hook_key(key)[6:20] not in errors[0]


async def test_hook_keys_of_24_and_64_bytes_are_accepted(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOK_ENV, f"{hook_key(b'2' * 24)} {hook_key(b'6' * 64)}")
    async with App(make_settings()) as app:
        assert set(app.hook_secrets) == {HOOK_ENV}


async def test_a_malformed_hook_secret_stops_the_start_instead_of_failing_each_request(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOK_ENV, "whsec_!!not-base64-HIDDEN!!")
    errors = await start_refused(make_settings())
    assert errors == [f"{HOOK_ENV}: a webhook secret must be whsec_ followed by base64"]


# --- secrets out of error texts (issue 17, "also seen") ---------------------------------------

SMTP_USER, SMTP_PASSWORD = "notifier@fao.example.com", "Smtp-Pa55word-7x"
AUTH_PLAIN = base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode()
AUTH_LOGIN = [base64.b64encode(s.encode()).decode() for s in (SMTP_USER, SMTP_PASSWORD)]


class EchoingAuth:
    """An SMTP server's authenticator that refuses, quoting what it was given (some do)."""

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        echo = f"{password} {password.upper()} {AUTH_PLAIN} {' '.join(AUTH_LOGIN)}"
        return AuthResult(
            success=False, handled=False, message=f"535 5.7.8 bad login {login}: {echo}"
        )


@pytest.fixture
def echoing_smtp() -> Iterator[int]:
    port = free_port()
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=port,
        ready_timeout=5,
        authenticator=EchoingAuth(),
        auth_require_tls=False,
    )
    controller.start()
    yield port
    controller.stop()


def leaked(text: str) -> list[str]:
    """The secrets (any case) that `text` shows."""
    lower = text.lower()
    return [s for s in (SMTP_PASSWORD, AUTH_PLAIN, *AUTH_LOGIN[1:]) if s.lower() in lower]


async def test_an_smtp_535_that_echoes_the_password_is_stored_and_logged_masked(
    make_settings: MakeSettings, echoing_smtp: int, caplog: pytest.LogCaptureFixture
) -> None:
    smtp = SmtpSettings(
        host="127.0.0.1",
        port=echoing_smtp,
        timeout=2.0,
        security="none",
        allow_plain_auth=True,
        username=SMTP_USER,
        password=SecretStr(SMTP_PASSWORD),
    )
    caplog.set_level(logging.INFO)
    async with App(make_settings(smtp=smtp)) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        await app.run_until_idle()
        rows = await app.store.list_deliveries()
        attempts = await app.store.db.fetchall("SELECT error FROM delivery_attempts", {})
    assert {r.state for r in rows} == {State.FAILED}  # 535: permanent
    for row in rows:
        assert row.last_error is not None and row.last_error.startswith("535")
        assert "***" in row.last_error and leaked(row.last_error) == []
    assert attempts and all(leaked(error) == [] for (error,) in attempts)
    logged = [r for r in caplog.records if r.__dict__.get("action") == "send_failed"]
    assert logged and all(leaked(str(r.__dict__)) == [] for r in logged)


async def test_a_robot_error_that_echoes_its_key_in_upper_case_is_stored_masked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: Platforms,
    make_settings: MakeSettings,
) -> None:
    name = use_channel(tmp_path, monkeypatch, platforms, "wecom")
    answer = {"errcode": 40008, "errmsg": f"invalid message type, key {WECOM_KEY.upper()}"}
    platforms.add(name, script=[(200, answer)])
    async with App(make_settings()) as app:
        await app.outbox.send_now("security-day", reminder_id="on-start", now=app.clock())
        await app.run_until_idle()
        (row,) = await chat_rows(app)
        problems = app.channels.problems()
    assert row.last_error is not None and "***" in row.last_error
    assert WECOM_KEY.lower() not in row.last_error.lower()
    assert all(WECOM_KEY.lower() not in p.lower() for p in problems)


def test_the_masker_hides_each_secret_in_any_case_and_the_auth_forms_of_the_password() -> None:
    mask = Masker(smtp_auth_forms(SMTP_USER, SMTP_PASSWORD))
    text = f"535 {SMTP_PASSWORD.upper()} {AUTH_PLAIN} {AUTH_LOGIN[1]} {AUTH_LOGIN[0]}=="
    assert mask(text) == "535 *** *** *** ***=="
    assert (
        Masker(["abc"])("abc stays: too short to be a secret")
        == "abc stays: too short to be a secret"
    )

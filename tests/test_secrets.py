"""Secrets: published placeholders are refused; hook secrets are read at start and at reload."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from notifier.cli.main import main
from notifier.errors import ConfigError
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import ROOT, MakeSettings
from tests.test_web import HOOK_ENV, NOW, PAYLOAD, SECRET, body_of, signed

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
        make_settings(calendar_token=SecretStr("admin-token"))


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
            app.request_reload()  # what SIGHUP does
            await asyncio.wait_for(asyncio.gather(*app._reloads), 5)
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

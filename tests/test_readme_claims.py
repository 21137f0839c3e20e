"""What the README says about exit codes, errors listed at once and 400 vs 422, as behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result

from notifier.cli.main import main
from notifier.errors import ConfigError
from notifier.schedule.load import load_schedule
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import MakeSettings, write_schedule

Client = TestClient[Any, Any]
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}

# One event whose first reminder does not parse and whose second one is refused by a check
# that needs the parsed event (`every:` on a one-day event); another whose audience is unknown.
TWO_KINDS_OF_ERROR = """\
audiences:
  staff: [{email: fazhi@fao.example.com}]
defaults: {audience: staff}
events:
  - id: one-day
    title: 一天
    date: "4·15"
    reminders:
      - before: 7x
      - every: 每天
      - on: start
        audience: nobody
  - id: two-dates
    title: 两个日期键
    date: "01-01"
    month: 5
    reminders: [{before: 7x}]
"""


def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Result:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return CliRunner().invoke(main, ["check"], env=env, catch_exceptions=False)


# --- `notifier check`: exit 2 on a setting, 1 on the configuration files -----------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NOTIFIER_NOTICES__DIGEST_AT": "7:30am"}, "NOTIFIER_NOTICES__DIGEST_AT"),
        (
            {"NOTIFIER_SMTP__USERNAME": "fazhi", "NOTIFIER_SMTP__SECURITY": "none"},
            "NOTIFIER_SMTP__SECURITY=none",
        ),
        ({"NOTIFIER_DELIVERY__LEASE_SECONDS": "0.1"}, "NOTIFIER_DELIVERY__LEASE_SECONDS"),
        (
            {"NOTIFIER_ADMIN_TOKEN": "same-token", "NOTIFIER_CALENDAR_TOKEN": "same-token"},
            "NOTIFIER_CALENDAR_TOKEN must differ from NOTIFIER_ADMIN_TOKEN",
        ),
    ],
)
def test_check_exits_2_naming_the_setting_when_a_setting_is_wrong(
    env: dict[str, str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = check(tmp_path, monkeypatch, **env)
    assert result.exit_code == 2, result.output
    assert "配置错误 setting error" in result.output and named in result.output
    assert "NOTIFIER_:" not in result.output  # a check across settings names no empty variable
    assert "Traceback" not in result.output


def test_check_exits_1_listing_every_schedule_error_at_once(
    tmp_path: Path, config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules, templates = config_dirs
    path = write_schedule(schedules, TWO_KINDS_OF_ERROR)
    result = check(
        tmp_path,
        monkeypatch,
        NOTIFIER_SCHEDULES_DIR=str(schedules),
        NOTIFIER_TEMPLATES_DIR=str(templates),
        NOTIFIER_DATABASE_URL=f"sqlite:///{tmp_path / 'check.db'}",
    )
    assert result.exit_code == 1, result.output
    assert f"{path}: events[0].reminders[0].before: '7x' is not a duration" in result.output
    assert f"{path}: events[0].reminders[1].every: the event's dates are single" in result.output
    assert f"{path}: events[0].reminders[2]: unknown audience 'nobody'" in result.output


def test_a_bad_reminder_hides_no_error_of_its_siblings_or_its_event(tmp_path: Path) -> None:
    path = write_schedule(tmp_path, TWO_KINDS_OF_ERROR)
    with pytest.raises(ConfigError) as info:
        load_schedule(tmp_path)
    assert sorted(info.value.errors) == sorted(
        [
            f"{path}: events[0].reminders[0].before: '7x' is not a duration",
            f"{path}: events[0].reminders[1].every: the event's dates are single days; every: "
            "needs a span such as a week or a month (use on: start) "
            "(单日事件不能按周期发送，请改用 on: start)",
            f"{path}: events[0].reminders[2]: unknown audience 'nobody' (audience)",
            f"{path}: events[1].reminders[0].before: '7x' is not a duration",
            f"{path}: events[1]: an event needs exactly one of date, month, lunar, rrule "
            "(got date, month)",
        ]
    )


def test_an_event_whose_own_keys_are_wrong_is_reported_once_not_checked_further(
    tmp_path: Path,
) -> None:
    path = write_schedule(
        tmp_path,
        """\
        audiences:
          staff: [{email: fazhi@fao.example.com}]
        events:
          - id: bad-date
            title: X
            date: "13-40"
            audience: staff
            reminders: [{before: 7x}, {every: 每天}]
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_schedule(tmp_path)
    text = "\n".join(info.value.errors)
    assert f"{path}: events[0].date" in text
    assert f"{path}: events[0].reminders[0].before: '7x' is not a duration" in text
    assert "reminders[1]" not in text  # its dates are unknown: nothing to check `every:` against


# --- the admin API: a `limit` that is not plain digits is 400, one out of range 422 ----------


@pytest.fixture
async def api(make_settings: MakeSettings) -> AsyncIterator[Client]:
    async with App(make_settings()) as app:
        async with TestClient(TestServer(create_web_app(app))) as client:
            yield client


@pytest.mark.parametrize(
    ("limit", "status", "detail"),
    [
        ("-1", 400, "limit: expected a positive integer"),
        ("%2B5", 400, "limit: expected a positive integer"),
        ("0", 422, "limit: Input should be greater than or equal to 1"),
        ("1001", 422, "limit: Input should be less than or equal to 1000"),
    ],
)
async def test_a_delivery_limit_is_400_unless_digits_and_422_out_of_range(
    api: Client, limit: str, status: int, detail: str
) -> None:
    resp = await api.get(f"/api/deliveries?limit={limit}", headers=ADMIN)
    assert resp.status == status
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["error"] and detail in body["detail"]

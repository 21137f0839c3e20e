"""`notifier status` and `upcoming`'s last line: the ledger's counts and the rows waiting for a
mail account's quota, read from a real SQLite ledger where a row was made to wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from click.testing import CliRunner, Result

from notifier.cli.main import main
from notifier.config import Settings
from notifier.delivery.quotas import next_midnight
from notifier.service import App
from tests.conftest import MakeSettings, smtp_settings, write_schedule
from tests.smtp_server import SmtpServer
from tests.test_quotas import staff_schedule


def cli_env(settings: Settings) -> dict[str, str]:
    """The CLI reads its settings from the environment: the same ledger and config."""
    return {
        "NOTIFIER_SCHEDULES_DIR": str(settings.schedules_dir),
        "NOTIFIER_TEMPLATES_DIR": str(settings.templates_dir),
        "NOTIFIER_DATABASE_URL": settings.database_url,
        "NOTIFIER_MAIL_DROP_DIR": str(settings.mail_drop_dir),
        "NOTIFIER_MAIL_FROM": "notifier@fao.example.com",
    }


async def invoke(settings: Settings, *args: str) -> Result:
    """Run the command off the loop (it runs its own)."""
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, main, list(args), env=cli_env(settings), catch_exceptions=False
    )


async def one_row_waiting(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> Settings:
    """Two staff rows, an account allowing 1/day: one sent, one waiting for the next day."""
    server = smtp_server()
    settings = make_settings(smtp=smtp_settings(server, limits="1/day"))
    write_schedule(settings.schedules_dir, staff_schedule(2))
    async with App(settings) as app:
        await app.outbox.send_now("drill", now=app.clock())
        stats = await app.run_until_idle()
    assert (stats.sent, stats.deferred) == (1, 1)
    return settings


async def test_status_counts_the_ledger_and_shows_the_waiting_row_with_its_reason_and_time(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    settings = await one_row_waiting(make_settings, smtp_server)
    result = await invoke(settings, "status")
    assert result.exit_code == 0, result.output
    midnight = datetime.fromtimestamp(next_midnight(time.time(), settings.tz), settings.tz)
    lines = result.output.splitlines()
    cells = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in lines
        if line.count("│") == 4  # state, email, total
    }
    assert cells["sent"] == ["1", "1"] and cells["pending"] == ["1", "1"]
    assert cells["dead"] == ["0", "0"]
    assert "共 total 2 rows" in result.output
    assert "Waiting for quota or a pause: 1 rows" in result.output
    (waiting,) = [line for line in lines if "s1@fao.example.com" in line]
    assert "等待配额 waiting for quota 1/day" in waiting
    assert midnight.strftime("%Y-%m-%d %H:%M") in waiting


async def test_status_with_nothing_waiting_says_so(make_settings: MakeSettings) -> None:
    settings = make_settings()
    result = await invoke(settings, "status")
    assert result.exit_code == 0, result.output
    assert "共 total 0 rows" in result.output
    assert "等待配额 waiting for quota: 0 rows" in result.output


async def test_upcoming_ends_with_how_many_rows_wait_for_quota_and_when_the_first_goes(
    make_settings: MakeSettings, smtp_server: Callable[..., SmtpServer]
) -> None:
    settings = await one_row_waiting(make_settings, smtp_server)
    result = await invoke(settings, "upcoming", "--from", "2027-03-01", "--to", "2027-03-31")
    assert result.exit_code == 0, result.output
    at = datetime.fromtimestamp(next_midnight(time.time(), settings.tz), settings.tz)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("等待配额 waiting for quota: 1 rows")
    assert f"最早发出 first goes at {at.strftime('%Y-%m-%d %H:%M')}" in last

"""`notifier channels test`, `preview --audience` and `check` with chat channels."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from notifier.cli.main import main
from tests.conftest import write_schedule
from tests.robots import Platforms
from tests.test_channels import CHAT_SCHEDULE, FEISHU_SECRET, FEISHU_TOKEN, WECOM_KEY


@pytest.fixture
def threaded_platforms() -> Iterator[Platforms]:
    """The stand-in on its own loop in a thread: the CLI runs its own event loop."""
    loop = asyncio.new_event_loop()
    platforms = Platforms()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(platforms.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(5)
    yield platforms
    asyncio.run_coroutine_threadsafe(platforms.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def cli(
    tmp_path: Path,
    config_dirs: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    threaded_platforms: Platforms,
):  # type: ignore[no-untyped-def]
    schedules, templates = config_dirs
    text = CHAT_SCHEDULE.replace("CHANNEL", "fazhi-wecom").replace("TYPE", "wecom")
    write_schedule(schedules, text.replace("    secret_env: NOTIFIER_TEST_SECRET\n", ""))
    monkeypatch.chdir(tmp_path)
    env = {
        "NOTIFIER_SCHEDULES_DIR": str(schedules),
        "NOTIFIER_TEMPLATES_DIR": str(templates),
        "NOTIFIER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NOTIFIER_MAIL_DROP_DIR": str(tmp_path / "mail"),
        "NOTIFIER_MAIL_FROM": "notifier@fao.example.com",
        "NOTIFIER_TEST_URL": threaded_platforms.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}"),
    }

    def invoke(*args: str, **more: str) -> Result:
        return CliRunner().invoke(main, list(args), env={**env, **more}, catch_exceptions=False)

    return invoke


def test_preview_shows_the_group_message_as_it_will_be_posted(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("preview", "security-day", "--reminder", "on-start", "--audience", "group")
    assert result.exit_code == 0, result.output
    assert "渠道 channel: fazhi-wecom" in result.output
    assert '"msgtype": "markdown"' in result.output
    assert "**【提醒】全民国家安全教育日" in result.output
    assert WECOM_KEY not in result.output


def test_preview_of_an_unknown_audience_is_a_clear_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("preview", "security-day", "--audience", "nobody")
    assert result.exit_code == 1 and "unknown audience 'nobody'" in result.output


def test_channels_test_posts_a_message_and_reports_success(  # type: ignore[no-untyped-def]
    cli, threaded_platforms: Platforms
) -> None:
    robot = threaded_platforms.add(WECOM_KEY)
    result = cli("channels", "test", "fazhi-wecom")
    assert result.exit_code == 0, result.output
    assert "已送达 delivered" in result.output and WECOM_KEY not in result.output
    assert "测试消息" in robot.received[0]["markdown"]["content"]
    listed = cli("channels", "list")
    assert "fazhi-wecom\twecom\thttp://127.0.0.1/…\tok" in listed.output


def test_a_configuration_error_from_channels_test_is_reported_by_check_until_fixed(  # type: ignore[no-untyped-def]
    cli, threaded_platforms: Platforms
) -> None:
    robot = threaded_platforms.add(
        WECOM_KEY,
        script=[(200, {"errcode": 93000, "errmsg": "invalid webhook url, from ip: 1.2.3.4"})],
    )
    failed = cli("channels", "test", "fazhi-wecom")
    assert failed.exit_code == 1
    assert "93000 invalid webhook url" in failed.output and "1.2.3.4" not in failed.output
    check = cli("check")
    assert check.exit_code == 1
    assert "channel fazhi-wecom" in check.output and "93000" in check.output
    assert cli("channels", "test", "fazhi-wecom").exit_code == 0
    assert cli("check").exit_code == 0 and len(robot.received) == 1


def test_channels_test_names_an_unset_variable(cli) -> None:  # type: ignore[no-untyped-def]
    text = CHAT_SCHEDULE.replace("CHANNEL", "fazhi-wecom").replace("TYPE", "wecom")
    unused = text.replace("audience: [staff, group]", "audience: staff")
    write_schedule(Path("schedules"), unused)
    result = cli(
        "channels", "test", "fazhi-wecom", NOTIFIER_SCHEDULES_DIR="schedules", NOTIFIER_TEST_URL=""
    )
    assert result.exit_code == 1
    assert "NOTIFIER_TEST_URL" in result.output and "is not set" in result.output


def test_a_feishu_post_channel_previews_as_text_and_its_test_message_is_accepted(  # type: ignore[no-untyped-def]
    cli, threaded_platforms: Platforms
) -> None:
    text = CHAT_SCHEDULE.replace("CHANNEL", "ops-feishu").replace("TYPE", "feishu")
    write_schedule(Path("schedules"), text + "    form: post\n")
    env = {
        "NOTIFIER_SCHEDULES_DIR": "schedules",
        "NOTIFIER_TEST_URL": threaded_platforms.url(f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}"),
        "NOTIFIER_TEST_SECRET": FEISHU_SECRET,
    }
    robot = threaded_platforms.add(FEISHU_TOKEN, secret=FEISHU_SECRET)
    shown = cli("preview", "security-day", "--reminder", "on-start", "--audience", "group", **env)
    assert shown.exit_code == 0, shown.output
    message = shown.output.split("--- 消息 message ---\n")[1].split("--- JSON ---")[0]
    assert message.startswith("【提醒】全民国家安全教育日")  # the title, then the lines
    assert "**" not in message and '"msg_type": "post"' in shown.output
    tested = cli("channels", "test", "ops-feishu", **env)
    assert tested.exit_code == 0, tested.output
    assert robot.refused == [] and robot.received[0]["msg_type"] == "post"

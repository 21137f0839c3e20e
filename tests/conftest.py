"""Shared fixtures: real SMTP servers, real database files, a small schedule and templates."""

from __future__ import annotations

import io
import logging
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from notifier.config import DeliverySettings, HttpSettings, Settings, SmtpSettings
from notifier.ledger.models import Delivery, State
from notifier.logs import setup_logging
from tests.conftest_db import db_url, pg_url, sqlite_url, store
from tests.smtp_server import Faults, SmtpServer

# Fixtures defined beside the database helpers, re-exported for every test module.
__all__ = ["db_url", "pg_url", "sqlite_url", "store"]

ROOT = Path(__file__).resolve().parent.parent

SUBJECT = "【提醒】{{ event.title }}（{{ event.start | cn_date }}）"
BODY = textwrap.dedent(
    """\
    {{ recipient.name }}：
    {{ event.title }}{% if days_until > 0 %}还有{{ days_until }}天
    {%- elif days_until == 0 %}就在今天{% else %}已过去{{ -days_until }}天{% endif %}。
    提醒：{{ reminder.label }}
    {{ org }}
    {% if unsubscribe_url %}退订 Unsubscribe: {{ unsubscribe_url }}{% endif %}
    """
)
HTML = "<p>{{ recipient.name }}：{{ event.title }} {{ event.vars.get('note', '') }}</p>\n"
HOOK_SUBJECT = "来访申请：{{ payload.visitor }}（{{ payload.org }}）"
HOOK_BODY = "{{ payload.visitor }} 申请于 {{ payload.date }} 来访。\n"

SCHEDULE = """\
audiences:
  staff:
    - {email: fazhi@fao.example.com, name: 法治处}
    - {email: office@fao.example.com, name: 办公室}
events:
  - id: security-day
    title: 全民国家安全教育日
    date: "4·15"
    reminders:
      - before: 10 days
      - before: 3个工作日
      - on: start
hooks:
  - id: visit-request
    secret_env: NOTIFIER_HOOK_VISIT_REQUEST
    template: visit-notice
    audience: staff
"""


def log_as_the_service(fmt: str | None = None) -> None:
    """Configure logging as `notifier run` does: `setup_logging` with the settings' format
    (NOTIFIER_LOG_FORMAT, or `fmt`), level and time zone.

    `setup_logging` replaces the root logger's handlers, as a fresh process wants; pytest's own
    (caplog, the captured-log report) are put back beside it.
    """
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    root = logging.getLogger()
    pytest_handlers = [h for h in root.handlers if type(h).__module__.startswith("_pytest")]
    setup_logging(fmt or settings.log_format, settings.log_level, settings.tz)
    root.handlers.extend(pytest_handlers)


@pytest.fixture(autouse=True)
def service_logging() -> None:
    """Every test logs through the service's own handler and formatter, so that every
    `extra=` is made into a record and formatted (a reserved name there raises KeyError only
    when the record is made, which the default WARNING level skipped for `log.info`).

    Per test, not per session: the CLI tests run `notifier send` in-process, which sets
    logging up again at WARNING on CliRunner's stream; later tests would log nothing.
    """
    log_as_the_service()


def write_templates(directory: Path) -> Path:
    for name, files in {
        "reminder": {"subject.txt": SUBJECT, "body.txt": BODY, "body.html": HTML},
        "visit-notice": {"subject.txt": HOOK_SUBJECT, "body.txt": HOOK_BODY},
    }.items():
        (directory / name).mkdir(parents=True, exist_ok=True)
        for part, text in files.items():
            (directory / name / part).write_text(text, encoding="utf-8")
    return directory


def write_schedule(directory: Path, text: str = SCHEDULE, name: str = "main.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def config_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A schedules dir with one event and one hook, and a templates dir."""
    schedules = tmp_path / "schedules"
    write_schedule(schedules)
    templates = write_templates(tmp_path / "templates")
    return schedules, templates


MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, config_dirs: tuple[Path, Path]) -> MakeSettings:
    """Settings for a test: its own SQLite file and mail drop; no env, no .env file."""
    schedules, templates = config_dirs

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "schedules_dir": schedules,
            "templates_dir": templates,
            "database_url": f"sqlite:///{tmp_path / 'ledger.db'}",
            "mail_drop_dir": tmp_path / "mail",
            "mail_from": "notifier@fao.example.com",
            "org_name": "市外办法治处",
            "admin_token": SecretStr("admin-token-for-tests"),
            "calendar_token": SecretStr("calendar-token-for-tests"),
            "unsubscribe_secret": SecretStr("unsubscribe-secret"),
            "http": HttpSettings(port=0),
            "delivery": DeliverySettings(base_delay=0.05, max_delay=0.2, poll_interval=0.2),
            "watch": False,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """Start real aiosmtpd servers (optionally faulty) on ephemeral ports; stop them after."""
    started: list[SmtpServer] = []

    def start(
        faults: Faults | None = None, port: int | None = None, *, pipelining: bool = True
    ) -> SmtpServer:
        server = SmtpServer(faults, port, pipelining=pipelining).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def delivery_row(**overrides: Any) -> Delivery:
    """A ledger row as the worker holds it (claimed, first attempt), for tests of the parts
    below the ledger; `overrides` name its fields."""
    values: dict[str, Any] = {
        "id": 1,
        "key": "k1",
        "event_id": "constitution-week",
        "occurrence": "2026-12-04",
        "reminder_id": "on-start",
        "recipient": "fazhi@fao.example.com",
        "channel": "email",
        "state": State.SENDING,
        "due_at": 0.0,
        "message_id": "<k1@notifier.test>",
        "subject": "宪法宣传周",
        "message": "",
        "source": "schedule",
        "external": False,
        "attempts": 1,
        "lease_until": None,
        "last_error": None,
        "created_at": 0.0,
        "updated_at": 0.0,
        "sent_at": None,
    }
    values.update(overrides)
    return Delivery(**values)


def smtp_settings(server: SmtpServer, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "timeout": 2.0}
    values.update(overrides)
    return SmtpSettings(**values)


def workbook_bytes(rows: list[list[Any]]) -> bytes:
    """An .xlsx as an office saves it (made with openpyxl, read back by calamine)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()

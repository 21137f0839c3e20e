"""A test calendar for the console, and a running console over it (real SMTP, real SQLite)."""

from __future__ import annotations

import base64
import re
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from notifier.config import DeliverySettings, HttpSettings, Settings
from notifier.ledger.models import NewDelivery, State
from notifier.service import App
from notifier.web import create_web_app
from tests.conftest import smtp_settings, write_templates
from tests.console_server import ConsoleServer
from tests.smtp_server import SmtpServer

TZ = ZoneInfo("Asia/Shanghai")
# 2026-04-01 09:00 in Shanghai: April's grid holds the 清明 shift (04-05 -> 04-03).
NOW = datetime(2026, 4, 1, 9, 0, tzinfo=TZ).timestamp()
ADMIN_TOKEN = "admin-token-for-tests"
VIEWER_TOKEN = "viewer-token-for-tests"
EDITOR_TOKEN = "editor-token-for-tests"
# A Standard Webhooks key of 32 bytes (24-64 are allowed; secret_checks).
HOOK_SECRET = "whsec_" + base64.b64encode(b"console-test-hook-secret-0123456").decode()
STAFF = ["fazhi@fao.example.com", "office@fao.example.com"]
UNSUBSCRIBED = "left@corp.example.com"

SCHEDULE = """\
audiences:
  staff:
    - {email: fazhi@fao.example.com, name: 法治处}
    - {email: office@fao.example.com, name: 办公室}
  enterprises:
    csv: enterprises.csv
    external: true
events:
  - id: security-day
    title: 全民国家安全教育日
    date: "4·15"
    reminders:
      - before: 10 days
      - before: 3个工作日
      - on: start
  - id: ip-week
    title: 知识产权宣传周
    date: "04-20..04-26"
    reminders:
      - on: start
  - id: civil-code-month
    title: 民法典宣传月
    month: 5
    reminders:
      - before: 10 days
        audience: enterprises
  - id: spring-festival
    title: 春节
    lunar: "01-01"
    reminders:
      - before: 5个工作日
  - id: apec-briefing
    title: APEC商务旅行卡政策解读会
    rrule: "FREQ=MONTHLY;BYMONTH=3,6,9,12;BYDAY=TH;BYSETPOS=3"
    reminders:
      - before: 10 days
hooks:
  - id: visit-request
    secret_env: NOTIFIER_HOOK_VISIT_REQUEST
    template: visit-notice
    audience: staff
"""

CSV = """\
email,name,org
a@corp.example.com,甲公司,甲
not-an-address,乙公司,乙
left@corp.example.com,丙公司,丙
"""


def write_calendar(root: Path) -> tuple[Path, Path]:
    schedules = root / "schedules"
    schedules.mkdir(parents=True, exist_ok=True)
    (schedules / "main.yaml").write_text(textwrap.dedent(SCHEDULE), encoding="utf-8")
    (schedules / "enterprises.csv").write_text(CSV, encoding="utf-8")
    return schedules, write_templates(root / "templates")


def console_settings(root: Path, smtp: SmtpServer | None = None, **overrides: Any) -> Settings:
    schedules, templates = write_calendar(root)
    values: dict[str, Any] = {
        "schedules_dir": schedules,
        "templates_dir": templates,
        "database_url": f"sqlite:///{root / 'ledger.db'}",
        "mail_drop_dir": root / "mail",
        "mail_from": "notifier@fao.example.com",
        "org_name": "市外办法治处",
        "admin_token": SecretStr(ADMIN_TOKEN),
        "viewer_token": SecretStr(VIEWER_TOKEN),
        "editor_token": SecretStr(EDITOR_TOKEN),
        "unsubscribe_secret": SecretStr("unsubscribe-secret"),
        "http": HttpSettings(port=0),
        "delivery": DeliverySettings(base_delay=0.05, max_delay=0.2, poll_interval=0.1),
        "watch": False,
    }
    if smtp is not None:
        values["smtp"] = smtp_settings(smtp)
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def row(
    key: str, state: State, *, due: float = NOW - 3600, error: str | None = None
) -> NewDelivery:
    return NewDelivery(
        key=key,
        event_id="security-day",
        occurrence="2026-04-15",
        reminder_id="before-10d",
        recipient="fazhi@fao.example.com",
        channel="email",
        due_at=due,
        message_id=f"<{key.replace('/', '.')}@test>",
        subject="【提醒】全民国家安全教育日（4月15日）",
        message=(
            "Subject: =?utf-8?b?5rWL6K+V?=\r\nMessage-ID: <x@test>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nraw body of " + key + "\r\n"
        ),
        state=state,
        last_error=error,
    )


async def seed(app: App) -> dict[str, int]:
    """A dead row, a sent row and an unsubscribed address; returns the rows' ids by name."""
    rows = [
        row("seed/dead", State.DEAD, error="550 5.1.1 mailbox unavailable"),
        row("seed/sent", State.SENT, due=NOW - 7200),
    ]
    await app.store.enqueue(rows, now=NOW - 7200)
    await app.store.unsubscribe(UNSUBSCRIBED, now=NOW - 86400, source="one-click")
    ids = await app.store.ids_for_keys([r.key for r in rows])
    return {"dead": ids[0], "sent": ids[1]}


@dataclass
class Console:
    server: ConsoleServer
    smtp: SmtpServer | None
    ids: dict[str, int]

    @property
    def url(self) -> str:
        return self.server.url


def start_console(root: Path, smtp: SmtpServer | None, *, worker: bool = True) -> Console:
    server = ConsoleServer(console_settings(root, smtp), clock=lambda: NOW, worker=worker)
    server.start()
    return Console(server, smtp, server.call(seed))


@pytest.fixture
def hook_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_HOOK_VISIT_REQUEST", HOOK_SECRET)


# --- an App behind a test HTTP client, and signing in as a browser does ---

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path, hook_secret_env: None) -> AsyncIterator[tuple[App, Client]]:
    async with App(console_settings(tmp_path), clock=lambda: NOW) as app:
        await seed(app)
        async with TestClient(TestServer(create_web_app(app))) as c:
            yield app, c


def form_token(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def sign_in(c: Client, token: str = ADMIN_TOKEN, **extra: str) -> Any:
    page = await (await c.get("/")).text()
    return await c.post(
        "/signin",
        data={"csrf": form_token(page), "token": token, "next": "/", **extra},
        allow_redirects=False,
    )

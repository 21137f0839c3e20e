"""Two `notifier run` processes on one schedules directory and one PostgreSQL database, each
with its file watcher on: an event edited in the console of one shows in the console of the
other (its watcher reloads the written file), and both show the same history."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import PG_ADMIN_URL, Procs, free_port, notifier_env, wait_until, write_config

pytestmark = [pytest.mark.postgres]

ADMIN = "processes-admin-token-0123"


@pytest.fixture
def pg_database() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"notifier_edit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Browser:
    """A cookie-keeping HTTP client signed in to one instance's console."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        page = self.get("/")
        self.csrf = self.post("/signin", {"csrf": csrf_of(page), "token": ADMIN, "next": "/"})
        self.csrf = csrf_of(self.csrf)

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as resp:
            return str(resp.read().decode("utf-8"))

    def post(self, path: str, data: dict[str, str]) -> str:
        body = urllib.parse.urlencode(data).encode()
        with self.opener.open(self.base + path, data=body, timeout=30) as resp:
            return str(resp.read().decode("utf-8"))


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_an_edit_in_one_processs_console_shows_in_the_other_by_its_watcher(
    tmp_path: Path, pg_database: str
) -> None:
    cfg = write_config(tmp_path, audience=3)
    ports = [free_port(), free_port()]
    with Procs(tmp_path) as procs:
        sink = procs.sink()
        for i, port in enumerate(ports):
            env = notifier_env(
                cfg,
                database_url=pg_database,
                smtp_port=sink.port,
                http_port=port,
                NOTIFIER_WATCH="true",
                NOTIFIER_ADMIN_TOKEN=ADMIN,
            )
            workdir = tmp_path / f"instance{i}"
            workdir.mkdir()
            procs.notifier(env, cwd=workdir, name=f"instance{i}")
        for port in ports:
            wait_until(lambda p=port: healthy(p), within=30, what=f"/healthz on {port}")
        one, two = Browser(ports[0]), Browser(ports[1])
        page = one.get(f"/events/{cfg.event_id}/edit")
        base = re.search(r'name="base" value="([^"]*)"', page)
        date = re.search(r'<textarea id="f-date" name="date" rows="2" required>([^<]*)<', page)
        assert base and date
        assert '<option value="ignore" selected>' in page  # the file's workdays: ignore
        saved = one.post(
            f"/events/{cfg.event_id}/edit",
            {
                "csrf": one.csrf,
                "base": base.group(1),
                "id": cfg.event_id,
                "title": "年度普法责任清单报送（改）",
                "rule": "date",
                "date": date.group(1),
                "send_at": f"{cfg.send_at:%H:%M:%S}",
                "workdays": "ignore",
                "audience": "bulk",
                "r0_kind": "on",
                "r0_value": "start",
                "do": "save",
            },
        )
        assert "已保存" in saved, saved[:2000]
        wait_until(
            lambda: "年度普法责任清单报送（改）" in two.get(f"/events/{cfg.event_id}"),
            within=20,
            what="the other instance to reload the edit",
        )
        history = two.get(f"/events/{cfg.event_id}/history")
        assert "编辑 edited" in history and "在控制台之外编辑" not in history

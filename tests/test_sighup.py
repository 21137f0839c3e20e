"""A real `notifier run`: a hook secret rotated in `.env` applies on SIGHUP, not before."""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from tests.procs import HOOK_ENV, HOOK_ID, Procs, free_port, notifier_env, wait_until, write_config

OLD = "whsec_" + base64.b64encode(b"sighup-test-secret-before-000001").decode()
NEW = "whsec_" + base64.b64encode(b"sighup-test-secret-after-0000002").decode()


def post(port: int, secret: str, msg_id: str) -> int:
    body = json.dumps({"visitor": "张三", "date": "2026-12-10"}, ensure_ascii=False)
    now = datetime.now(UTC)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/{HOOK_ID}",
        data=body.encode(),
        method="POST",
        headers={
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body),
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_sighup_rereads_a_hook_secret_rotated_in_dotenv(tmp_path: Path) -> None:
    config = write_config(tmp_path, audience=1, hooks=True)
    port = free_port()
    env = notifier_env(
        config, database_url=f"sqlite:///{tmp_path / 'n.db'}", smtp_port=1, http_port=port
    )
    del env[HOOK_ENV]  # the secret lives in the working directory's .env only
    del env["NOTIFIER_SMTP__HOST"]  # the mail drop: nothing here is about sending
    env["NOTIFIER_MAIL_DROP_DIR"] = str(tmp_path / "mail")
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"{HOOK_ENV}={OLD}\n", encoding="utf-8")
    with Procs(tmp_path) as procs:
        service = procs.notifier(env, cwd=tmp_path)
        wait_until(lambda: healthy(port) or not service.alive(), within=20, what="/healthz")
        assert service.alive(), service.describe()
        assert post(port, OLD, "before") == 202
        dotenv.write_text(f"{HOOK_ENV}={NEW}\n", encoding="utf-8")
        assert post(port, NEW, "too-early") == 401  # not re-read per request
        service.popen.send_signal(signal.SIGHUP)
        started = time.monotonic()
        wait_until(lambda: post(port, NEW, f"after-{time.monotonic()}") == 202, within=5)
        print(f"\n[sighup] new secret in force {time.monotonic() - started:.2f} s after SIGHUP")
        assert post(port, OLD, "old-again") == 401
        assert service.alive()
        assert service.terminate(within=15) == 0, service.describe()
    assert '"action": "reloaded"' in service.log.read_text(encoding="utf-8")

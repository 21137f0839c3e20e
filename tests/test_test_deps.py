"""scripts/test-deps: what `make test` prepares before pytest (README, 快速开始 Quick start).

Run as it is, against this machine: everything is installed and PostgreSQL is up, so it must only
look. A missing component is simulated without uninstalling anything: the TEST_DEPS_* variables
point a check at a path that does not exist, and stand-ins for `apt-get`, `id`, `pg_ctlcluster`
and `pg_isready` on PATH record what the script asks of them (the real ones would change the
machine).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests import conftest_db
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "test-deps"
PACKAGES = {
    "TEST_DEPS_CHROMIUM": "chromium",
    "TEST_DEPS_FONT": "fonts-wqy-zenhei",
    "TEST_DEPS_DOVECOT": "dovecot-imapd",
}


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    """A small shell program called `name` on PATH, recording its arguments."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{bin_dir}/calls"\n{body}\n', encoding="utf-8")
    path.chmod(0o755)


def calls(bin_dir: Path) -> list[str]:
    log = bin_dir / "calls"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def run(bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env}
    return subprocess.run(
        ["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=60, check=False
    )


def absent(tmp_path: Path, *names: str) -> dict[str, str]:
    """TEST_DEPS_* variables pointing the given checks at files that do not exist."""
    return {name: str(tmp_path / "absent" / name.lower()) for name in names}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_with_everything_present_it_only_looks_and_takes_well_under_a_second(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    for tool in ("apt-get", "pg_ctlcluster"):
        stand_in(bin_dir, tool, "exit 1")
    started = time.perf_counter()
    result = run(bin_dir)
    took = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert calls(bin_dir) == []  # nothing installed, nothing started
    assert result.stdout == result.stderr == ""
    assert took < 1.0, f"{took:.2f} s"  # about 0.05 s on an idle machine


def test_a_missing_package_as_a_user_prints_the_command_to_run_and_fails(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, "id", "echo 1000")
    stand_in(bin_dir, "apt-get", "exit 1")
    result = run(bin_dir, **absent(tmp_path, "TEST_DEPS_CHROMIUM", "TEST_DEPS_DOVECOT"))
    assert result.returncode == 1
    assert "missing: chromium dovecot-imapd" in result.stderr
    assert (
        "sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends "
        "chromium dovecot-imapd'" in result.stderr
    )
    assert [c for c in calls(bin_dir) if c.startswith("apt-get")] == []


def test_a_missing_package_as_root_is_installed_with_apt_get_saying_what(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    env = absent(tmp_path, *PACKAGES)
    # The stand-in apt-get "installs" by creating the files the script looks for.
    made = "\n".join(
        f'mkdir -p "$(dirname "{p}")"; touch "{p}"; chmod +x "{p}"' for p in env.values()
    )
    stand_in(bin_dir, "id", "echo 0")
    stand_in(bin_dir, "apt-get", f'[ "$1" = install ] || exit 0\n{made}')
    result = run(bin_dir, **env)
    assert result.returncode == 0, result.stderr
    wanted = "chromium fonts-wqy-zenhei dovecot-imapd"
    assert f"installing the Debian packages the tests need: {wanted}" in result.stdout
    assert [c for c in calls(bin_dir) if c.startswith("apt-get")] == [
        "apt-get update -qq",
        f"apt-get install -y -qq --no-install-recommends {wanted}",
    ]


def test_a_package_still_missing_after_apt_get_fails_loudly(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, "id", "echo 0")
    stand_in(bin_dir, "apt-get", "exit 0")  # "succeeds" without installing anything
    result = run(bin_dir, **absent(tmp_path, "TEST_DEPS_FONT"))
    assert result.returncode == 1
    assert "!!! installed, yet still missing: fonts-wqy-zenhei" in result.stderr


def test_postgresql_down_is_started_and_waited_for(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    etc = tmp_path / "etc-postgresql"
    (etc / "15").mkdir(parents=True)
    # pg_isready answers once the stand-in pg_ctlcluster has "started" the cluster.
    stand_in(bin_dir, "pg_ctlcluster", f'touch "{bin_dir}/up"')
    stand_in(bin_dir, "pg_isready", f'[ -e "{bin_dir}/up" ]')
    result = run(bin_dir, TEST_DEPS_PG_ETC=str(etc), TEST_DEPS_PG_PORT=str(closed_port()))
    assert result.returncode == 0, result.stderr
    assert "pg_ctlcluster --skip-systemctl-redirect 15 main start" in calls(bin_dir)
    assert "PostgreSQL is up" in result.stdout


def test_postgresql_that_never_answers_fails_loudly(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    etc = tmp_path / "etc-postgresql"
    (etc / "15").mkdir(parents=True)
    stand_in(bin_dir, "pg_ctlcluster", "exit 1")
    port = closed_port()
    result = run(
        bin_dir, TEST_DEPS_PG_ETC=str(etc), TEST_DEPS_PG_PORT=str(port), TEST_DEPS_PG_WAIT="1"
    )
    assert result.returncode == 1
    assert f"!!! PostgreSQL is NOT available on 127.0.0.1:{port}" in result.stderr
    assert "pg_ctlcluster --skip-systemctl-redirect 15 main start" in calls(bin_dir)


async def test_a_postgresql_test_that_cannot_connect_fails_rather_than_skips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The project's rule: no skipped tests in CI. The fixture's server on a closed port."""
    monkeypatch.setattr(
        conftest_db, "PG_ADMIN_URL", f"postgresql://postgres@127.0.0.1:{closed_port()}/x"
    )
    monkeypatch.setattr(conftest_db, "_pg_error", [])  # the session's cache, restored after
    for _ in range(2):  # the first attempt, then the cached verdict
        with pytest.raises(BaseException) as caught:  # a skip is a BaseException too
            await conftest_db._admin()
        assert caught.type is pytest.fail.Exception, caught.type
        assert "PostgreSQL NOT AVAILABLE" in str(caught.value)
        assert "this test FAILS" in str(caught.value)

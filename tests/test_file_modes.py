"""Private files: the ledger (and its -wal, -shm), the unsubscribe key and the mail drop are
created 0600 in 0700 directories, whatever the umask; an existing file open to others is
warned about (issue 17, item 11)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from notifier.service import App
from tests.conftest import MakeSettings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """022, the usual default: what made every one of these files 0644 before."""
    old = os.umask(0o022)
    yield
    os.umask(old)


async def test_the_ledger_and_its_wal_and_shm_are_0600_in_a_new_0700_directory(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    db = tmp_path / "var" / "notifier.db"
    async with App(make_settings(database_url=f"sqlite:///{db}")) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        # WAL mode: both exist while it is open (`mode` fails on a missing file).
        assert {p.name: mode(p) for p in (db, wal, shm)} == {
            "notifier.db": 0o600,
            "notifier.db-wal": 0o600,
            "notifier.db-shm": 0o600,
        }
    assert mode(db.parent) == 0o700


async def test_the_unsubscribe_key_is_created_0600_in_a_0700_var(
    make_settings: MakeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with App(make_settings(unsubscribe_secret=None)):
        pass
    key = tmp_path / "var" / "unsubscribe.key"
    assert (mode(key), mode(key.parent)) == (0o600, 0o700)
    assert len(key.read_text().strip()) == 64  # the whole key, written before it was linked in


async def test_the_mail_drop_writes_each_message_0600_in_0700_directories(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    drop = tmp_path / "var" / "mail"
    async with App(make_settings(mail_drop_dir=drop)) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        stats = await app.run_until_idle()
    messages = list((drop / "new").iterdir())
    assert stats.sent == len(messages) == 2
    assert {mode(p) for p in messages} == {0o600}
    assert {mode(d) for d in (drop.parent, drop, drop / "tmp", drop / "new", drop / "cur")} == {
        0o700
    }


async def test_existing_files_open_to_others_are_warned_about_by_name(
    make_settings: MakeSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    async with App(make_settings(unsubscribe_secret=None)):
        pass  # made privately
    key, db, drop = tmp_path / "var" / "unsubscribe.key", tmp_path / "ledger.db", tmp_path / "mail"
    for path in (key, db, drop):
        path.chmod(0o755 if path.is_dir() else 0o644)  # as an older version left them
    caplog.set_level(logging.WARNING)
    async with App(make_settings(unsubscribe_secret=None)):
        pass
    warned = {
        r.__dict__["path"] for r in caplog.records if r.__dict__.get("action") == "file_mode_open"
    }
    assert warned == {str(key), str(db), str(drop)}
    assert mode(key) == 0o644  # left as it is: an operator may have opened it on purpose


async def test_private_files_stay_private_under_a_permissive_umask(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    os.umask(0)
    drop = tmp_path / "drop"
    async with App(
        make_settings(mail_drop_dir=drop, unsubscribe_secret=SecretStr("u" * 20))
    ) as app:
        await app.outbox.send_now("security-day", now=app.clock())
        await app.run_until_idle()
    assert mode(tmp_path / "ledger.db") == 0o600
    assert {mode(p) for p in (drop / "new").iterdir()} == {0o600}
    assert mode(drop) == 0o700

"""Bad input everywhere: a clear error, never a traceback, nothing lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.errors import ConfigError, HeaderError, StoreError
from notifier.ledger.models import State
from notifier.schedule.model import check_address, load_schedule
from notifier.service import App
from tests.conftest import MakeSettings, write_schedule

# Random YAML-shaped data: scalars, lists and mappings with keys the loader knows.
KEYS = st.sampled_from(
    ["events", "audiences", "hooks", "defaults", "holidays", "id", "title", "date", "month",
     "lunar", "rrule", "reminders", "before", "after", "on", "off", "work", "send_at",
     "workdays", "audience", "template", "csv", "members", "email", "name", "grace", "vars"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 400), st.text(max_size=12),
    st.sampled_from(["4·15", "12-01..12-07", "3个工作日", "7x", "09:00", "13-40", "start"]),
)  # fmt: skip
TREES = st.recursive(
    SCALARS,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(KEYS, kids, max_size=5)),
    max_leaves=25,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=TREES)
def test_random_config_structures_give_errors_naming_the_file_never_a_traceback(
    tmp_path: Path, data: object
) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({"events": data} if not isinstance(data, dict) else data))
    try:
        load_schedule(tmp_path)
    except ConfigError as exc:
        assert exc.errors
        assert all(line.startswith(str(tmp_path)) for line in exc.errors), exc.errors


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_random_text_files_give_errors_naming_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "fuzz.yaml").write_text(text, encoding="utf-8")
    try:
        load_schedule(tmp_path)
    except ConfigError as exc:
        assert all(str(tmp_path / "fuzz.yaml") in line for line in exc.errors)


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("fazhi@fao.example.com", True),
        ("张三@例子.公司", True),  # internationalised (SMTPUTF8) addresses are valid syntax
        ("no-at-sign.example.com", False),
        ("a@b@example.com", False),
        ("a@example.com\r\nBcc: x@example.com", False),
        ("", False),
    ],
)
def test_addresses_are_validated(address: str, ok: bool) -> None:
    assert (check_address(address) is None) is ok


async def test_an_audience_name_with_a_line_break_cannot_inject_headers(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    write_schedule(
        settings.schedules_dir,
        """\
        audiences:
          staff: [{email: a@example.com, name: "甲\\r\\nBcc: victim@example.com"}]
        events:
          - {id: e, title: T, date: "05-01", reminders: [{on: start}]}
        """,
    )
    async with App(settings) as app:
        with pytest.raises(HeaderError):
            await app.outbox.send_now("e", now=app.clock())
        assert await app.store.list_deliveries() == []


def test_a_huge_csv_with_broken_rows_keeps_the_good_ones(tmp_path: Path) -> None:
    lines = ["email,name"]
    for i in range(20_000):
        lines.append(f"user{i}@example.com,企业{i}" if i % 100 else f"broken-{i},企业{i},extra")
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_schedule(tmp_path, "audiences:\n  big: {csv: big.csv, external: true}\n")
    schedule = load_schedule(tmp_path)
    assert schedule.audiences["big"].size == 19_800
    assert len(schedule.warnings) == 200
    assert schedule.warnings[0].endswith("line 2: wrong number of columns (row skipped)")


async def test_a_read_only_database_is_refused_at_start_with_its_name(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    # Root ignores permission bits, so open the file read-only through SQLite's URI instead.
    path = tmp_path / "ledger.db"
    async with App(make_settings()):
        pass
    settings = make_settings(database_url=f"sqlite:///{path}?mode=ro")
    with pytest.raises(StoreError) as info:
        async with App(settings) as app:
            await app.outbox.send_now("security-day", now=app.clock())
    assert "ledger.db" in str(info.value)


async def test_a_locked_database_gives_a_clear_error_and_loses_nothing(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings()
    async with App(settings) as app:
        blocker = sqlite3.connect(tmp_path / "ledger.db", timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match=r"ledger\.db"):
                await app.outbox.send_now("security-day", now=app.clock())
        finally:
            blocker.rollback()
            blocker.close()
        created, _ = await app.outbox.send_now("security-day", now=app.clock())
        await app.worker.run_until_idle()
        assert created == 2
        assert {r.state for r in await app.store.list_deliveries()} == {State.SENT}

"""The schedules contract: what staff write, and the errors they get when it is wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.checks import load_config
from notifier.dates.rules import Duration
from notifier.errors import ConfigError
from notifier.schedule.load import load_schedule
from tests.conftest import MakeSettings, write_schedule

ROOT = Path(__file__).resolve().parent.parent


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_schedule(directory)
    return info.value.errors


def test_on_and_off_keys_are_not_read_as_booleans(tmp_path: Path) -> None:
    write_schedule(
        tmp_path,
        """\
        holidays:
          "2027":
            off: ["2027-01-01..2027-01-03"]
            work: ["2027-02-20"]
        audiences:
          staff: [{email: a@example.com, name: 甲}]
        events:
          - id: e
            title: T
            date: "12-04"
            reminders:
              - on: start
              - on: end
        """,
    )
    schedule = load_schedule(tmp_path)
    kinds = [(r.kind, r.value) for r in schedule.events["e"].reminders]
    assert kinds == [("on", "start"), ("on", "end")]
    assert schedule.calendar.has_official_data(2027)
    assert not schedule.calendar.is_workday(datetime(2027, 1, 1).date())
    assert schedule.calendar.is_workday(datetime(2027, 2, 20).date())  # a Saturday 调休


def test_a_bad_duration_names_file_path_and_problem(tmp_path: Path) -> None:
    path = write_schedule(
        tmp_path,
        """\
        audiences:
          staff: [{email: a@example.com}]
        events:
          - {id: a, title: A, date: "01-01", reminders: [{on: start}]}
          - {id: b, title: B, date: "01-02", reminders: [{on: start}]}
          - id: c
            title: C
            date: "01-03"
            reminders:
              - before: 7x
        """,
        name="a.yaml",
    )
    assert errors_of(tmp_path) == [f"{path}: events[2].reminders[0].before: '7x' is not a duration"]


def test_a_bad_audience_key_names_the_yaml_path_not_the_validators(tmp_path: Path) -> None:
    path = write_schedule(
        tmp_path,
        """\
        audiences:
          partners: {csv: partners.csv, kind: external}
        """,
    )
    errors = errors_of(tmp_path)
    assert f"{path}: audiences.partners.kind: Extra inputs are not permitted" in errors
    assert not any("function-" in e or "Raw" in e for e in errors), errors


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    write_schedule(
        tmp_path,
        """\
        audiences:
          staff: [{email: not-an-address}]
        events:
          - id: Bad_Id
            title: ""
            date: "13-40"
            reminders: [{before: 3 days, on: start}]
          - id: two-dates
            title: X
            date: "01-01"
            month: 5
            reminders: [{on: start}]
          - id: orphan
            title: Y
            month: 5
            audience: nobody
            reminders: [{after: 1个工作日}]
        """,
    )
    errors = errors_of(tmp_path)
    text = "\n".join(errors)
    assert "audiences.staff[0].email" in text
    assert "events[0].id" in text
    assert "events[0].title" in text
    assert "events[0].date" in text and "'13-40'" in text
    assert "events[0].reminders[0]: a reminder needs exactly one of before, on, after" in text
    assert "events[1]: an event needs exactly one of date, month, lunar, rrule" in text
    # The third event is valid on its own, but the first pass already failed the file.
    assert len(errors) >= 6


def test_unknown_audience_and_duplicate_ids_across_files(tmp_path: Path) -> None:
    write_schedule(
        tmp_path,
        """\
        audiences:
          staff: [{email: a@example.com}]
        events:
          - {id: same, title: A, date: "01-01", reminders: [{on: start}]}
        """,
        name="a.yaml",
    )
    write_schedule(
        tmp_path,
        """\
        events:
          - {id: same, title: B, date: "01-02", reminders: [{on: start}]}
          - {id: other, title: C, date: "01-03", audience: nobody, reminders: [{on: start}]}
        """,
        name="b.yaml",
    )
    text = "\n".join(errors_of(tmp_path))
    assert "b.yaml: events[0].id: 'same' is defined again" in text
    assert "b.yaml: events[1].reminders[0]: unknown audience 'nobody'" in text


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("events: [\n  - id: a\n", encoding="utf-8")
    (errors,) = [errors_of(tmp_path)]
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'x.yaml'}: line ")
    assert "invalid YAML" in errors[0]


def test_defaults_apply_per_file_and_reminders_override_them(tmp_path: Path) -> None:
    write_schedule(
        tmp_path,
        """\
        defaults: {send_at: "08:30", workdays: next, audience: staff, template: reminder}
        audiences:
          staff: [{email: a@example.com}]
          others: [{email: b@example.com}]
        events:
          - id: e
            title: E
            date: "05-01"
            reminders:
              - before: 2周
              - {after: 1 day, send_at: "17:00", audience: others, template: outreach, id: wrap-up}
        """,
    )
    first, second = load_schedule(tmp_path).events["e"].reminders
    assert (first.id, first.value, first.send_at.isoformat(), first.workdays) == (
        "before-2w",
        Duration(2, "weeks"),
        "08:30:00",
        "next",
    )
    assert (second.id, second.audience, second.template, second.send_at.hour) == (
        "wrap-up",
        "others",
        "outreach",
        17,
    )


def test_csv_audience_keeps_good_rows_and_reports_bad_ones_by_line(tmp_path: Path) -> None:
    (tmp_path / "aud").mkdir()
    (tmp_path / "aud" / "e.csv").write_text(
        "email,name,district\n"
        "a@example.com,甲公司,思明区\n"
        "broken\n"
        "not-an-email,乙公司,湖里区\n"
        "c@example.com,丙公司,集美区\n",
        encoding="utf-8",
    )
    write_schedule(
        tmp_path,
        """\
        audiences:
          enterprises: {csv: aud/e.csv, external: true}
        events: []
        """,
    )
    schedule = load_schedule(tmp_path)
    audience = schedule.audiences["enterprises"]
    assert audience.size == 2 and audience.external
    assert [r.email for r in audience.recipients()] == ["a@example.com", "c@example.com"]
    assert next(audience.recipients()).context()["district"] == "思明区"
    warnings = "\n".join(schedule.warnings)
    assert "line 3: wrong number of columns" in warnings
    assert "line 4: 'not-an-email' is not a valid email address" in warnings


def test_missing_template_and_unknown_variable_are_found_by_check(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings()
    (settings.templates_dir / "visit-notice" / "body.txt").write_text("{{ visitor_name }}")
    write_schedule(
        settings.schedules_dir,
        """\
        events:
          - {id: x, title: X, date: "06-01", template: nowhere, reminders: [{on: start}]}
        """,
        name="more.yaml",
    )
    with pytest.raises(ConfigError) as info:
        load_config(settings, now=datetime(2026, 11, 26, tzinfo=UTC))
    text = "\n".join(info.value.errors)
    assert "nowhere: template not found" in text
    assert "visit-notice/body.txt: unknown variable 'visitor_name'" in text


def test_a_variable_missing_at_render_time_is_found_by_check(make_settings: MakeSettings) -> None:
    settings = make_settings()
    (settings.templates_dir / "reminder" / "body.txt").write_text("{{ event.vars.location }}")
    with pytest.raises(ConfigError) as info:
        load_config(settings, now=datetime(2026, 11, 26, tzinfo=UTC))
    assert any("security-day" in e and "location" in e for e in info.value.errors)


def test_the_shipped_calendar_and_templates_are_valid(make_settings: MakeSettings) -> None:
    settings = make_settings(schedules_dir=ROOT / "schedules", templates_dir=ROOT / "templates")
    schedule, _, warnings = load_config(settings, now=datetime(2026, 11, 26, tzinfo=UTC))
    for needed in ("security-day", "constitution-week", "civil-code-month"):
        assert needed in schedule.events
    assert "visit-request" in schedule.hooks
    assert schedule.audiences["enterprises"].external
    assert all(
        r.email.endswith("example.com") for r in schedule.audiences["enterprises"].recipients()
    )
    assert any("2027" in w for w in warnings)  # chinese-calendar has no 2027 data
    # The example chat channel is defined but unused: its unset variable is only a warning.
    assert schedule.channels["fazhi-wecom"].type == "wecom"
    assert any("NOTIFIER_CHANNEL_FAZHI_WECOM" in w for w in warnings)
    # The campaign reminders took over from the one-day reminders the last release shipped
    # (its ids: constitution-week `start`, civil-code-month's default `on-start`).
    week = {r.id: r for r in schedule.events["constitution-week"].reminders}
    month = {r.id: r for r in schedule.events["civil-code-month"].reminders}
    assert week["daily"].replaces == ("start",) and month["weekly"].replaces == ("on-start",)


ADMINS_AUDIENCES = """\
audiences:
  admins: [{email: xinxi@fao.example.com, name: 信息化管理员}]
  ops-group: {chat: ops}
channels:
  ops: {type: wecom, url_env: NOTIFIER_TEST_OPS_URL}
"""


def test_admins_takes_one_audience_or_a_list_of_email_and_chat_audiences(tmp_path: Path) -> None:
    write_schedule(tmp_path, "admins: admins\n" + ADMINS_AUDIENCES)
    assert load_schedule(tmp_path).admins == ("admins",)
    write_schedule(tmp_path, "admins: [ops-group, admins, ops-group]\n" + ADMINS_AUDIENCES)
    assert load_schedule(tmp_path).admins == ("ops-group", "admins")  # in order, each once
    write_schedule(tmp_path, ADMINS_AUDIENCES)
    assert load_schedule(tmp_path).admins == ()


@pytest.mark.parametrize(
    ("admins", "expected"),
    [
        ("[admins, nobody]", "admins[1]: unknown audience 'nobody'"),
        ("nobody", "admins: unknown audience 'nobody'"),
        ("[]", "admins: an empty list of audiences"),
        ("{chat: ops}", "admins: {'chat': 'ops'} is not an audience name or a list"),
    ],
)
def test_a_bad_admins_key_names_the_file_and_the_item(
    tmp_path: Path, admins: str, expected: str
) -> None:
    path = write_schedule(tmp_path, f"admins: {admins}\n" + ADMINS_AUDIENCES)
    errors = errors_of(tmp_path)
    assert any(e.startswith(f"{path}: {expected}") for e in errors), errors


def test_admins_named_differently_in_two_files_is_an_error_naming_both(tmp_path: Path) -> None:
    write_schedule(tmp_path, "admins: [admins, ops-group]\n" + ADMINS_AUDIENCES)
    write_schedule(tmp_path, "admins: admins\n", name="other.yaml")
    (error,) = errors_of(tmp_path)
    assert error.startswith("admins: named differently in")
    assert "main.yaml (admins, ops-group)" in error and "other.yaml (admins)" in error


@pytest.mark.parametrize("where", ["../outside.csv", "ABSOLUTE", "aud/link.csv"])
def test_a_csv_audience_outside_the_schedules_directory_is_refused_naming_the_file(
    tmp_path: Path, where: str
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("email,name\nsecret@example.com,秘\n", encoding="utf-8")
    schedules = tmp_path / "schedules"
    (schedules / "aud").mkdir(parents=True)
    (schedules / "aud" / "link.csv").symlink_to(outside)
    csv = str(outside) if where == "ABSOLUTE" else where
    path = write_schedule(
        schedules,
        f"""\
        audiences:
          staff: {{csv: "{csv}"}}
        events:
          - {{id: e, title: E, date: "01-01", reminders: [{{on: start}}]}}
        """,
    )
    errors = errors_of(schedules)
    assert errors[0].startswith(
        f"{path}: audiences.staff.csv: '{csv}' is outside the schedules directory ({outside})"
    )

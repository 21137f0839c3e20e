"""The console's YAML writer (notifier/schedule/edit.py): what it saves, the loader reads back
as the same event, and the rest of the file stays as it was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.schedule.edit import find_event, inserted, replaced
from notifier.schedule.files import load_yaml_text
from notifier.schedule.load import load_schedule
from notifier.schedule.raw import RawEvent

WHERE = Path("schedules/x.yaml")
FILE = """\
# 手写的文件 (a hand-written file)
defaults:
  send_at: "09:00"

events:
  # first
  - id: first
    title: 第一个
    date: "4·15"   # 行尾注释 / a comment at the end of a line
    reminders:
      - before: 10 days
  # last
  - id: last
    title: 最后一个
    month: 5
    reminders:
      - on: start
"""

# Text a title or a var may hold, including what YAML would read as something else.
TRICKY = st.sampled_from(
    ["yes", "no", "on", "off", "true", "null", "~", "09:00", "1:30", "123", "0x1F", "1e3",
     "2026-05-01", "- item", "a: b", "#not a comment", "'quoted'", '"dq"', " padded ", "",
     "多行\n文本", "tab\there", "{x: 1}", "[1, 2]", "&anchor", "*alias", "!tag", "%", "@", "`"]
)  # fmt: skip
TEXT = st.one_of(
    TRICKY,
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp", "Co", "Cn")),
        max_size=40,
    ),
)
DATES = st.sampled_from(
    ["4·15", "12-01..12-07", "3月31日", "01-31", "2026-05-01", "2026-05-01..2026-05-03"]
)
REMINDER = st.one_of(
    st.builds(lambda v: {"before": v}, st.sampled_from(["10 days", "3个工作日", "2周", 5])),
    st.builds(lambda v: {"on": v}, st.sampled_from(["start", "end"])),
    st.builds(lambda v: {"after": v}, st.sampled_from(["1个工作日", "2 days"])),
)
EVENT = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,20}\Z"),
        "title": TEXT.filter(lambda t: t.strip() != ""),
        "date": st.one_of(DATES, st.lists(DATES, min_size=2, max_size=3, unique=True)),
        "reminders": st.lists(REMINDER, min_size=1, max_size=3),
    },
    optional={
        "description": TEXT,
        "send_at": st.sampled_from(["08:30", "09:00", "17:45"]),
        "vars": st.dictionaries(
            st.from_regex(r"\A[a-z_][a-z0-9_]{0,10}\Z"),
            st.one_of(TEXT, st.integers(-1000, 1000), st.lists(TEXT, max_size=3)),
            max_size=3,
        ),
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENT)
def test_a_saved_event_loads_back_as_the_same_event(event: dict[str, Any]) -> None:
    event = {**event, "id": "new-" + event["id"]}
    added = inserted(FILE, event, WHERE)
    assert load_yaml_text(added)["events"][2] == event
    assert RawEvent.model_validate(load_yaml_text(added)["events"][2]) == RawEvent.model_validate(
        event
    )
    # Written over an existing event, too; the other events and the comments stay.
    changed = replaced(FILE, "first", event, WHERE)
    data = load_yaml_text(changed)
    assert data["events"][0] == event
    assert data["events"][1] == load_yaml_text(FILE)["events"][1]
    assert "# 手写的文件 (a hand-written file)" in changed and "# last" in changed


def test_an_unchanged_event_saved_again_leaves_the_file_byte_for_byte() -> None:
    found = find_event(FILE, "first", WHERE)
    assert found is not None
    assert replaced(FILE, "first", found[1], WHERE) == FILE


def test_the_projects_own_schedules_round_trip_unchanged() -> None:
    root = Path(__file__).resolve().parent.parent / "schedules"
    for path in sorted(root.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        for event in load_yaml_text(text).get("events") or []:
            found = find_event(text, event["id"], path)
            assert found is not None
            assert replaced(text, event["id"], found[1], path) == text, path


def test_a_new_event_in_a_new_file_loads(tmp_path: Path) -> None:
    text = inserted(
        "",
        {"id": "x", "title": "X", "date": "4·15", "reminders": [{"on": "start"}]},
        tmp_path / "console.yaml",
    )
    (tmp_path / "console.yaml").write_text(
        text + "audiences:\n  staff: [{email: a@b.example}]\n", encoding="utf-8"
    )
    assert "x" in load_schedule(tmp_path).events


def test_deleting_an_event_keeps_the_next_events_comment_and_drops_its_own() -> None:
    text = FILE.replace(
        "  # last\n",
        "  # last\n  - id: mid\n    title: M\n    month: 6\n"
        "    reminders:\n      - on: start\n  # after mid\n",
    )
    out = replaced(text, "mid", None, WHERE)
    assert out == FILE.replace("  # last\n", "  # after mid\n")


def test_attachments_are_edited_like_any_key_with_their_comments_kept() -> None:
    text = FILE.replace(
        "      - before: 10 days\n",
        "      - before: 10 days\n"
        "        attachments:\n"
        "          - files/报名表.docx   # 每年更新 / updated yearly\n",
    ).replace(
        '    date: "4·15"   # 行尾注释 / a comment at the end of a line\n',
        '    date: "4·15"   # 行尾注释 / a comment at the end of a line\n'
        "    attachments: [files/通知.pdf]\n",
    )
    found = find_event(text, "first", WHERE)
    assert found is not None
    event = found[1]
    assert replaced(text, "first", event, WHERE) == text
    # The event's own list changes; the reminder's (and its comment) stays.
    changed = replaced(text, "first", {**event, "attachments": ["files/通知v2.pdf"]}, WHERE)
    assert "attachments: [files/通知v2.pdf]" in changed
    assert "- files/报名表.docx   # 每年更新 / updated yearly" in changed
    # The form leaving a reminder's attachments empty removes them: they are its key now.
    reminder = {k: v for k, v in event["reminders"][0].items() if k != "attachments"}
    dropped = replaced(text, "first", {**event, "reminders": [reminder]}, WHERE)
    assert "报名表.docx" not in dropped and "attachments: [files/通知.pdf]" in dropped

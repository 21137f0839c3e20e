"""What a config may cost: file size, YAML aliases, error text; `check` is safe on any file.

Issue 17: a 584-byte YAML "alias bomb" made `check` run 14 s, take 1.6 GB and print 312 MB.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from notifier.cli.main import main
from notifier.errors import ConfigError
from notifier.schedule.load import load_schedule
from tests.conftest import SCHEDULE, write_schedule

AUDIENCE = "audiences:\n  staff: [{email: a@example.com, name: 甲}]\n"


def alias_bomb(levels: int = 9, size: int = 700) -> str:
    """Nine strings, and `levels` lists of nine aliases of the list before: the event's
    `date:` names the last one, which written out holds 9**levels strings (billions)."""
    lines = [
        "events:",
        "  - id: bomb",
        "    title: t",
        "    reminders: [{on: start}]",
        "    vars:",
        '      a0: &a0 ["lolololol","lolololol","lolololol","lolololol","lolololol",'
        '"lolololol","lolololol","lolololol","lolololol"]',
    ]
    for n in range(1, levels):
        lines.append(f"      a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]")
    lines.append(f"    date: *a{levels - 1}")
    text = "\n".join(lines) + "\n"
    return text + "#" * max(0, size - len(text) - 1) + "\n"


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_schedule(directory)
    return info.value.errors


def check(schedules: Path, templates: Path, tmp_path: Path) -> Result:
    env = {
        "NOTIFIER_SCHEDULES_DIR": str(schedules),
        "NOTIFIER_TEMPLATES_DIR": str(templates),
        "NOTIFIER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NOTIFIER_MAIL_DROP_DIR": str(tmp_path / "mail"),
        "NOTIFIER_MAIL_FROM": "notifier@fao.example.com",
    }
    return CliRunner().invoke(main, ["check"], env=env, catch_exceptions=False)


def test_check_refuses_a_700_byte_alias_bomb_fast_with_a_short_error(
    tmp_path: Path, config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules, templates = config_dirs
    monkeypatch.chdir(tmp_path)
    bomb = write_schedule(schedules, alias_bomb(), name="bomb.yaml")
    assert 650 <= bomb.stat().st_size <= 750
    started = time.monotonic()
    result = check(schedules, templates, tmp_path)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert f"{bomb}: (file): invalid YAML: aliases (*name) would grow the file" in result.output
    assert len(result.output.encode()) < 4096
    assert elapsed < 10  # 17 s and 2.9 GB before, on this machine; well under 1 s now


def test_a_reused_reminders_block_still_loads(tmp_path: Path) -> None:
    write_schedule(
        tmp_path,
        """\
        audiences:
          staff: [{email: a@example.com, name: 甲}]
        events:
          - id: a
            title: A
            date: "01-01"
            reminders: &usual [{before: 10 days}, {before: 3个工作日}, {on: start}]
          - {id: b, title: B, date: "02-01", reminders: *usual}
          - {id: c, title: C, date: "03-01", reminders: *usual}
        """,
    )
    schedule = load_schedule(tmp_path)
    assert [len(schedule.events[e].reminders) for e in "abc"] == [3, 3, 3]


def test_more_than_100_aliases_in_a_file_are_refused(tmp_path: Path) -> None:
    events = "\n".join(
        f'  - {{id: e{i}, title: E, date: "01-01", reminders: *r}}' for i in range(101)
    )
    path = write_schedule(
        tmp_path,
        AUDIENCE
        + "defs: &r [{on: start}]\n".replace("defs", "x-unused")
        + "events:\n"
        + events
        + "\n",
    )
    assert errors_of(tmp_path) == [
        f"{path}: (file): invalid YAML: 101 aliases (*name); at most 100 are allowed in a "
        "file (YAML 别名过多)"
    ]


def test_an_alias_of_itself_is_refused(tmp_path: Path) -> None:
    path = write_schedule(
        tmp_path,
        AUDIENCE + 'events:\n  - {id: e, title: E, date: &d ["01-01", *d], reminders: []}\n',
    )
    assert errors_of(tmp_path) == [
        f"{path}: (file): invalid YAML: the value anchored on line 4 contains an alias of itself"
    ]


def test_a_yaml_file_over_1_mib_is_refused(tmp_path: Path) -> None:
    path = write_schedule(tmp_path, SCHEDULE + "# " + "x" * (1024 * 1024) + "\n")
    assert errors_of(tmp_path) == [
        f"{path}: (file): larger than 1024 KiB: split it into several files (文件过大，请拆分)"
    ]


def test_a_yaml_file_not_in_utf8_says_so_and_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "gbk.yaml"
    path.write_bytes(SCHEDULE.encode("gbk"))
    (problem,) = errors_of(tmp_path)
    assert problem.startswith(f"{path}: (file): not UTF-8 (byte 0x")
    assert "save it as UTF-8" in problem


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("date", '"' + "7" * 5000 + '"'),
        ("date", "[[" + ", ".join(["2026"] * 2000) + "]]"),
        ("lunar", "[" + ", ".join(["x" * 50] * 200) + "]"),
        ("send_at", "{" + ", ".join(f"k{i}: {'v' * 40}" for i in range(200)) + "}"),
        ("grace", '"' + "1" * 5000 + 'h"'),
    ],
)
def test_a_long_raw_value_is_quoted_short_in_its_error(
    tmp_path: Path, key: str, value: str
) -> None:
    extra = "" if key == "date" else '\n    date: "01-01"'
    write_schedule(
        tmp_path,
        AUDIENCE + f"events:\n  - id: e\n    title: E\n    {key}: {value}{extra}\n"
        "    reminders: [{on: start}]\n",
    )
    (problem,) = errors_of(tmp_path)
    assert f"events[0].{key}" in problem
    assert "…" in problem or "..." in problem  # cut, and said to be
    assert len(problem) < 500


def test_at_most_200_problems_are_listed_then_how_many_more(tmp_path: Path) -> None:
    events = "".join(
        f"  - {{id: e{i}, title: E, reminders: [{{on: start}}]}}\n" for i in range(300)
    )
    write_schedule(tmp_path, AUDIENCE + "events:\n" + events)
    errors = errors_of(tmp_path)
    assert len(errors) == 200 + 1  # MAX_CONFIG_ERRORS
    assert errors[-1] == "... and 100 more problems (另有问题未列出)"


def test_check_on_a_gbk_template_is_a_config_error_naming_the_file(
    tmp_path: Path, config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules, templates = config_dirs
    monkeypatch.chdir(tmp_path)
    body = templates / "reminder" / "body.txt"
    body.write_bytes("{{ recipient.name }}：请注意。\n".encode("gbk"))
    result = check(schedules, templates, tmp_path)
    assert result.exit_code == 1
    assert f"{body}: not UTF-8 (byte 0x" in result.output
    assert "save it as UTF-8" in result.output
    assert "Traceback" not in result.output


def test_check_does_not_run_a_template_that_reaches_for_python_internals(
    tmp_path: Path, config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules, templates = config_dirs
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran"
    # Unsandboxed, this finds `os` through a loaded module and creates the marker file.
    (templates / "reminder" / "body.txt").write_text(
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}"
        "{% if c.__name__ == 'catch_warnings' %}"
        "{{ c()._module.__builtins__['__import__']('os').system('touch " + str(marker) + "') }}"
        "{% endif %}{% endfor %}",
        encoding="utf-8",
    )
    result = check(schedules, templates, tmp_path)
    assert result.exit_code == 1
    assert "access to attribute '__class__' of 'str' object is unsafe" in result.output
    assert not marker.exists()


def test_check_warns_about_invisible_characters_naming_file_and_place(
    tmp_path: Path, config_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules, templates = config_dirs
    monkeypatch.chdir(tmp_path)
    main_yaml = write_schedule(schedules, SCHEDULE.replace("全民国家安全", "全民\u200b国家安全"))
    subject = templates / "reminder" / "subject.txt"
    subject.write_text("【提醒】{{ event.title }}\u202e（内部）", encoding="utf-8")
    result = check(schedules, templates, tmp_path)
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", " ")
    assert (
        f"{main_yaml}: events[0].title: invisible or bidirectional control character U+200B "
        "(first at character 3)"
    ) in output
    assert f"{subject}: line 1: invisible or bidirectional control character U+202E" in output

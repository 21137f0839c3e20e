"""Template rendering: the variables templates see and how they are looked up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from notifier.compose.rendering import Renderer
from notifier.errors import RenderError


def renderer(tmp_path: Path, subject: str, body: str, html: str | None = None) -> Renderer:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "subject.txt").write_text(subject, encoding="utf-8")
    (folder / "body.txt").write_text(body, encoding="utf-8")
    if html is not None:
        (folder / "body.html").write_text(html, encoding="utf-8")
    return Renderer(tmp_path)


def test_dotted_names_read_dict_keys(tmp_path: Path) -> None:
    r = renderer(tmp_path, "来访：{{ payload.visitor }}", "{{ payload.org.name }}")
    out = r.render("t", {"payload": {"visitor": "张三", "org": {"name": "ACME 公司"}}})
    assert (out.subject, out.text) == ("来访：张三", "ACME 公司")


def test_a_key_named_like_a_dict_method_is_the_key(tmp_path: Path) -> None:
    r = renderer(
        tmp_path,
        "{{ payload.items }}",
        "{% for k, v in other.items() %}{{ k }}={{ v }}{% endfor %}",
    )
    out = r.render("t", {"payload": {"items": "3 件"}, "other": {"a": 1}})
    assert (out.subject, out.text) == ("3 件", "a=1")


def test_a_missing_field_is_a_render_error_naming_it(tmp_path: Path) -> None:
    r = renderer(tmp_path, "{{ payload.visitor }}", "x")
    with pytest.raises(RenderError, match="visitor"):
        r.render("t", {"payload": {"org": "ACME"}})


def test_html_is_escaped_and_text_is_not(tmp_path: Path) -> None:
    r = renderer(tmp_path, "s", "{{ payload.org }}", "<p>{{ payload.org }}</p>")
    out = r.render("t", {"payload": {"org": "<b>A&B</b>"}})
    assert out.text == "<b>A&B</b>"
    assert out.html == "<p>&lt;b&gt;A&amp;B&lt;/b&gt;</p>"


def test_a_gbk_template_is_an_error_naming_the_file(tmp_path: Path) -> None:
    r = renderer(tmp_path, "s", "x")
    body = tmp_path / "t" / "body.txt"
    body.write_bytes("{{ recipient.name }}：请注意。".encode("gbk"))
    (problem,) = r.unknown_variables("t")
    assert problem.startswith(f"{body}: not UTF-8 (byte 0x")
    assert problem.endswith("save it as UTF-8 (文件不是 UTF-8 编码，请另存为 UTF-8)")
    with pytest.raises(RenderError, match=f"^{re.escape(str(body))}: not UTF-8"):
        r.render("t", {"recipient": {"name": "甲"}})


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__",
        "payload.__class__.__subclasses__()",
        "cycler.__init__.__globals__",
        "payload.get.__self__",
    ],
)
def test_python_internals_are_out_of_a_templates_reach(tmp_path: Path, expression: str) -> None:
    r = renderer(tmp_path, "s", "{{ " + expression + " }}")
    with pytest.raises(RenderError, match=r"unsafe|undefined"):
        r.render("t", {"payload": {"a": 1}})


def test_a_template_cannot_change_what_it_is_given(tmp_path: Path) -> None:
    r = renderer(tmp_path, "s", "{{ payload.update({'visitor': '冒名'}) }}{{ payload.visitor }}")
    context = {"payload": {"visitor": "张三"}}
    with pytest.raises(RenderError, match="unsafe"):
        r.render("t", context)
    assert context == {"payload": {"visitor": "张三"}}


def test_a_link_out_of_the_templates_directory_is_refused_naming_it(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0", encoding="utf-8")
    templates = tmp_path / "templates"
    templates.mkdir()
    r = renderer(templates, "s", "x")
    body = templates / "t" / "body.txt"
    body.unlink()
    body.symlink_to(secret)
    (problem,) = r.unknown_variables("t")
    assert problem.startswith(f"{body}: a link to {secret}, outside the templates directory")
    with pytest.raises(RenderError, match="outside the templates directory"):
        r.render("t", {})


def test_a_link_inside_the_templates_directory_is_followed(tmp_path: Path) -> None:
    r = renderer(tmp_path, "s", "共用正文")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "subject.txt").symlink_to(tmp_path / "t" / "subject.txt")
    (tmp_path / "u" / "body.txt").symlink_to(Path("..") / "t" / "body.txt")
    assert r.unknown_variables("u") == []
    assert r.render("u", {}).text == "共用正文"


def test_a_byte_order_mark_stays_out_of_the_subject(tmp_path: Path) -> None:
    r = renderer(tmp_path, "\ufeff通知：{{ payload.a }}", "\ufeff正文")
    out = r.render("t", {"payload": {"a": "甲"}})
    assert (out.subject, out.text) == ("通知：甲", "正文")

"""Template rendering: the variables templates see and how they are looked up."""

from __future__ import annotations

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

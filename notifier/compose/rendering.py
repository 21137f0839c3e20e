"""Jinja2 templates -> subject, plain text and HTML, strictly: a missing variable is an error.

Layout (healthchecks' three-file model): ``templates/<name>/subject.txt``, ``body.txt`` and an
optional ``body.html``; HTML is autoescaped, text is not. Shared HTML layouts sit at the top level.
An optional ``chat.md`` (Markdown, not escaped) is the message posted to chat groups.

Templates run in Jinja's immutable sandbox: whoever edits a template (soon through the
console) can format what they are given, not reach Python's internals (`''.__class__...`) or
change the context. Template files are read only inside the templates directory (a link out
is refused), at most MAX_CONFIG_FILE_BYTES, and as UTF-8: each failure names the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment

from notifier.errors import RenderError
from notifier.invisible import capped, invisible_problem
from notifier.schedule.files import read_config_text

WEEKDAYS_CN = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")

# The files of a template; subject.txt and body.txt are required.
PARTS = ("subject.txt", "body.txt", "body.html", "chat.md")

# Every name a template may use; `notifier check` flags any other.
KNOWN_VARIABLES = frozenset(
    {"event", "reminder", "days_until", "recipient", "org", "payload", "unsubscribe_url"}
)


def cn_date(value: date) -> str:
    return f"{value.year}年{value.month}月{value.day}日"


def cn_weekday(value: date) -> str:
    return WEEKDAYS_CN[value.weekday()]


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str | None


class _Loader(jinja2.BaseLoader):
    """Template files read by `Renderer.read`: in the directory, bounded, UTF-8."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        path = self.renderer.directory.joinpath(*split_template_path(template))
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        return self.renderer.read(path), str(path), lambda: True


class _Environment(ImmutableSandboxedEnvironment):
    """`a.b` on a dict looks up the key first.

    Every template variable is a dict (event, recipient, payload...), and Jinja's own order,
    the attribute first, raised and caught an AttributeError for each `payload.visitor`.
    A key now wins over a dict method of the same name; a name that is not a key falls back
    to Jinja (`payload.items` is the method when there is no `items` key, and an unknown
    field is StrictUndefined).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._safe: dict[tuple[type, str], bool] = {}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """The sandbox's verdict, kept per (type, attribute): it depends on nothing else
        (isinstance checks and the name), and computing it was a third of a render's cost."""
        key = (type(obj), attr)
        safe = self._safe.get(key)
        if safe is None:
            safe = self._safe[key] = super().is_safe_attribute(obj, attr, value)
        return safe

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


class Renderer:
    """Compiles templates once (Jinja's cache) and renders them with a context."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._root = directory.resolve()
        self._text = self._environment(self, autoescape=False)
        self._html = self._environment(self, autoescape=True)
        self._compiled: dict[
            str, tuple[jinja2.Template, jinja2.Template, jinja2.Template | None]
        ] = {}
        self._chat: dict[str, jinja2.Template | None] = {}

    @staticmethod
    def _environment(renderer: Renderer, *, autoescape: bool) -> jinja2.Environment:
        env = _Environment(
            loader=_Loader(renderer),
            undefined=jinja2.StrictUndefined,
            autoescape=autoescape,
            keep_trailing_newline=False,
            auto_reload=False,
            cache_size=-1,
        )
        env.filters["cn_date"] = cn_date
        env.filters["cn_weekday"] = cn_weekday
        return env

    def read(self, path: Path) -> str:
        """A template file's text; RenderError names the file and what is wrong with it."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self._root):
            raise RenderError(
                f"{path}: a link to {resolved}, outside the templates directory "
                f"{self.directory}: copy the file in instead (模板文件须位于模板目录内)"
            )
        try:
            return read_config_text(path)
        except OSError as exc:
            raise RenderError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise RenderError(f"{path}: {exc}") from exc

    def exists(self, name: str) -> bool:
        return all((self.directory / name / part).is_file() for part in ("subject.txt", "body.txt"))

    def _template(self, env: jinja2.Environment, name: str) -> jinja2.Template:
        try:
            template = env.get_template(name)
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"template not found: {self.directory / str(exc.name)}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"{exc.filename}: line {exc.lineno}: {exc.message}") from exc
        # Jinja keeps a template's globals as a ChainMap over the environment's and copies it
        # into every render's context: iterating the ChainMap was a third of a hook's render
        # time. The environment's globals never change after `_environment`, so flatten once.
        template.globals = dict(template.globals)
        return template

    def _templates(
        self, name: str
    ) -> tuple[jinja2.Template, jinja2.Template, jinja2.Template | None]:
        # Looked up once per renderer: a reload builds a new Renderer, so no staleness.
        found = self._compiled.get(name)
        if found is None:
            html_name = f"{name}/body.html"
            found = (
                self._template(self._text, f"{name}/subject.txt"),
                self._template(self._text, f"{name}/body.txt"),
                self._template(self._html, html_name)
                if (self.directory / html_name).is_file()
                else None,
            )
            self._compiled[name] = found
        return found

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Render template `name`; RenderError names the file and the problem."""
        subject_t, text_t, html_t = self._templates(name)
        try:
            subject = subject_t.render(context).strip()
            text = text_t.render(context)
            html = html_t.render(context) if html_t is not None else None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{name}: {exc.message}") from exc
        except jinja2.TemplateError as exc:
            raise RenderError(f"{name}: {exc}") from exc
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise RenderError(f"{name}: {exc}") from exc
        if "\n" in subject or "\r" in subject:
            raise RenderError(f"{name}/subject.txt: the subject must be one line")
        return Rendered(subject, text, html)

    def render_chat(self, name: str, context: Mapping[str, Any]) -> tuple[Rendered, str | None]:
        """The email parts and `chat.md` rendered, or None when the template has none."""
        rendered = self.render(name, context)
        if name not in self._chat:
            path = f"{name}/chat.md"
            self._chat[name] = (
                self._template(self._text, path) if (self.directory / path).is_file() else None
            )
        chat_t = self._chat[name]
        if chat_t is None:
            return rendered, None
        try:
            return rendered, chat_t.render(context)
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{name}/chat.md: {exc.message}") from exc
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
            raise RenderError(f"{name}/chat.md: {exc}") from exc

    def unknown_variables(self, name: str) -> list[str]:
        """Top-level names the template uses that no context provides (static check), and
        files that cannot be read (not UTF-8, too large, a link out of the directory)."""
        problems: list[str] = []
        for part in PARTS:
            path = self.directory / name / part
            if not path.is_file():
                continue
            env = self._html if part.endswith(".html") else self._text
            try:
                ast = env.parse(self.read(path))
            except RenderError as exc:
                problems.append(str(exc))
                continue
            except jinja2.TemplateSyntaxError as exc:
                problems.append(f"{path}: line {exc.lineno}: {exc.message}")
                continue
            for var in sorted(meta.find_undeclared_variables(ast) - KNOWN_VARIABLES):
                problems.append(f"{path}: unknown variable '{var}'")
        return problems

    def invisible_characters(self, name: str) -> list[str]:
        """Warnings for the template's files, and the layouts they use, that hide
        characters (`notifier.invisible`). Unreadable files are `unknown_variables`' errors."""
        pending = [f"{name}/{part}" for part in PARTS]
        seen: set[str] = set()
        warnings: list[str] = []
        while pending:
            ref = pending.pop(0)
            if ref in seen:
                continue
            seen.add(ref)
            try:
                path = self.directory.joinpath(*split_template_path(ref))
                if not path.is_file():
                    continue
                text = self.read(path)
                refs = meta.find_referenced_templates(self._text.parse(text))
            except (RenderError, jinja2.TemplateError):
                continue
            pending.extend(r for r in refs if r is not None)
            lines = (
                f"{path}: line {i}: {problem}"
                for i, line in enumerate(text.splitlines(), 1)
                if (problem := invisible_problem(line)) is not None
            )
            warnings.extend(capped(path, lines))
        return warnings

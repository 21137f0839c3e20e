"""What the CLI modules share (kept apart so that `cli` and its command groups import it,
not each other)."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from notifier.config import Settings


def settings_or_exit() -> Settings:
    """Settings from env and `.env`; a bad value is named and the command exits 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            name = "NOTIFIER_" + "__".join(str(p).upper() for p in e["loc"])
            click.echo(f"配置错误 setting error {name}: {e['msg']}", err=True)
        sys.exit(2)

"""What the CLI modules share (kept apart so that `cli` and its command groups import it,
not each other)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from pydantic import ValidationError

from notifier.config import Settings
from notifier.errors import ConfigError, NotifierError

T = TypeVar("T")


def settings_or_exit() -> Settings:
    """Settings from env and `.env`; a bad value is named and the command exits 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            # A check across settings has no location; its message names the variables.
            name = " NOTIFIER_" + "__".join(str(p).upper() for p in e["loc"]) if e["loc"] else ""
            click.echo(f"配置错误 setting error{name}: {e['msg']}", err=True)
        sys.exit(2)


def fail_config(exc: ConfigError) -> None:
    """Print every configuration error and exit 1."""
    click.echo(f"配置有误 Invalid configuration ({len(exc.errors)}):", err=True)
    for line in exc.errors:
        click.echo(f"  {line}", err=True)
    sys.exit(1)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for the long-running service: webhook accepts ran 3-4% faster on it than on
    asyncio's loop (BENCHMARKS.md). None means asyncio's own loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            click.echo("错误 error: NOTIFIER_EVENT_LOOP=uvloop, but uvloop is missing", err=True)
            sys.exit(2)
        return None
    return uvloop.new_event_loop


def run_async(factory: Callable[[], Awaitable[T]], *, loop: str = "asyncio") -> T:
    """Run a command's coroutine; a NotifierError is a clear message and exit 1, no traceback."""
    try:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            return runner.run(factory())  # type: ignore[arg-type]
    except ConfigError as exc:
        fail_config(exc)
    except NotifierError as exc:
        click.echo(f"错误 error: {exc}", err=True)
        sys.exit(1)
    raise AssertionError("unreachable")

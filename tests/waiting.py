"""Waiting on a condition with a deadline, instead of sleeping a fixed time: one helper for
the tests on the event loop (`wait_for`) and one for those in a thread or process (`wait_until`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], object],
    within: float = 8.0,
    *,
    what: str = "condition",
    interval: float = 0.02,
) -> None:
    """Poll `predicate` on the event loop; fail the test if it is not true within `within` s."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], T], *, within: float, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll until `predicate()` is truthy (blocking); return its value or fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(interval)

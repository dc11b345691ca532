"""Waiting on observable state instead of sleeping: poll a predicate until it
holds, and fail with what was awaited when it does not in time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any, Literal


def describe(predicate: Callable[[], Any]) -> str:
    """What a predicate checks, for a failure message: a lambda's source line,
    otherwise the callable's qualified name."""
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    if "<lambda>" in name:
        try:
            lines, _ = inspect.getsourcelines(predicate)
        except (OSError, TypeError):
            return name
        return " ".join(line.strip() for line in lines)
    return name


def _timed_out(
    predicate: Callable[[], Any], what: str | None, timeout: float, value: Any
) -> AssertionError:
    return AssertionError(
        f"waited {timeout}s for {what or describe(predicate)}; last seen: {value!r}"
    )


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 5.0,
    interval: float = 0.02,
    what: str | None = None,
) -> Any:
    """Poll `predicate()` every `interval` seconds until it is truthy, and
    return that value; raise AssertionError naming `what` (or the predicate)
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(predicate, what, timeout, value)
        time.sleep(interval)


async def until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 5.0,
    interval: float = 0.005,
    what: str | None = None,
) -> Any:
    """`wait_until` inside an event loop: the loop's other tasks run while it
    polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(predicate, what, timeout, value)
        await asyncio.sleep(interval)


class WatchedEvent(asyncio.Event):
    """An asyncio.Event that knows how many tasks are waiting on it, so a test
    can wait until a task has gone to sleep on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    async def wait(self) -> Literal[True]:
        self.waiting += 1
        try:
            return await super().wait()
        finally:
            self.waiting -= 1

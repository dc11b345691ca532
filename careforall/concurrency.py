"""Blocking work from the event loop's background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")


async def in_thread(
    fn: Callable[[], R], *, on_cancel: Callable[[], None] | None = None
) -> R:
    """`asyncio.to_thread(fn)`, except that a cancel waits for the thread to end.

    A cancelled task cannot stop its thread; the thread would go on using a
    database connection after shutdown disposed of the engine, and that
    connection would never be closed. So the cancel is passed on only once
    the thread is done; `on_cancel` may ask it to finish early.
    """
    work = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        # Shutdown may cancel again while the thread finishes: wait it out.
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # retrieved: the cancel is what the caller hears of
        raise

"""The event loop's background tasks: blocking work in threads, and rounds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

R = TypeVar("R")

# How long a thread may keep the GIL while another waits for it. At Python's
# default (5 ms) a busy event loop starves the server's other threads: the
# group-commit writer gives the GIL up for every SQLite call and waits up to
# 5 ms to get it back, so a batch of eight statements took about 24 ms beside
# a busy thread where it takes 0.3 ms alone (67 times longer), and a stampede
# of cached reads held donations to half the rate asked. At 1 ms the same
# batch takes 8 times as long as alone; the loop gives up the GIL at most a
# thousand times a second, and only while another thread waits for it.
SWITCH_INTERVAL_S = 0.001


def share_the_gil() -> None:
    """Hand the GIL between the server's threads (the event loop, the writer,
    the dispatcher) every `SWITCH_INTERVAL_S`: set once by each serving
    process, as it is process-wide."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


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


class Rounds:
    """A lifespan task that works in rounds: each round says how long to wait
    for the next, and `wake()`, from any thread, cuts the wait short. A round
    that fails is logged and tried again a second later, so the task outlives
    a database or a server that is away for a moment."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.alive = False

    def wake(self) -> None:
        """Thread-safe: there may be work now."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run_rounds(self, round_: Callable[[], Awaitable[float]]) -> None:
        self._loop = asyncio.get_running_loop()
        self.alive = True
        try:
            while True:
                self._wake.clear()
                try:
                    delay = await round_()
                except Exception:
                    self._log.exception(f"{self._what} failed; retrying")
                    delay = 1.0
                try:
                    # Not asyncio.wait_for: on 3.11 it swallows a cancel that
                    # coincides with a wake-up, and shutdown would wait forever.
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            self.alive = False

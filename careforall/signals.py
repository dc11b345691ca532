"""asyncio's Event and Queue, small enough to keep thousands of.

An `asyncio.Event` or `asyncio.Queue` allocates a deque (about 760 bytes with
its first block) for waiters that it rarely has, and a Queue has three. Every
open WebSocket held one Queue and two Events (uvicorn's inbox and write gate,
the broadcaster's wake-up): about 4 KB a subscriber on a viral campaign page.
These keep a list of waiters only while someone waits, and behave the same
for what the server uses: set / clear / is_set / wait, put_nowait / get /
empty / qsize.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


def _wake_first(waiters: list[asyncio.Future[None]] | None) -> None:
    for waiter in waiters or ():
        if not waiter.done():
            waiter.set_result(None)
            return


def _forget(
    waiters: list[asyncio.Future[None]] | None, waiter: asyncio.Future[None]
) -> list[asyncio.Future[None]] | None:
    """`waiters` without `waiter`; None once nobody waits."""
    if waiters is not None and waiter in waiters:
        waiters.remove(waiter)
    return waiters or None


class Flag:
    """`asyncio.Event`: `wait()` returns once the flag is set."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._set = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters = [*(self._waiters or ()), waiter]
        try:
            await waiter
            return True
        finally:
            self._waiters = _forget(self._waiters, waiter)


class Mailbox(Generic[T]):
    """An unbounded `asyncio.Queue`: `get()` waits for the next item, in order."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        _wake_first(self._waiters)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        while not self._items:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters = [*(self._waiters or ()), waiter]
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken and cancelled at once: the item is for the next reader.
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._waiters = _forget(self._waiters, waiter)
                    _wake_first(self._waiters)
                raise
            finally:
                self._waiters = _forget(self._waiters, waiter)
        # Mailboxes hold a handful of messages at most: pop(0) is cheap.
        return self._items.pop(0)

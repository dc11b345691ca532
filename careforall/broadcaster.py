"""In-process pub/sub for live subscriptions.

Each subscriber keeps only the newest value: a slow reader skips the values it
missed instead of queueing them, so it never holds up the publisher or the
other subscribers, and memory stays bounded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

from careforall.signals import Flag

T = TypeVar("T")


class Subscriber(Generic[T]):
    __slots__ = ("_ready", "_value")

    def __init__(self) -> None:
        # A Flag, not an asyncio.Event: thousands wait on one campaign.
        self._ready = Flag()
        self._value: T | None = None

    def offer(self, value: T) -> None:
        self._value = value
        self._ready.set()

    async def next(self) -> T:
        await self._ready.wait()
        self._ready.clear()
        value = self._value
        assert value is not None
        return value


class Broadcaster(Generic[T]):
    def __init__(self) -> None:
        self._topics: dict[str, set[Subscriber[T]]] = defaultdict(set)

    def publish(self, topic: str, value: T) -> int:
        """Hand `value` to every subscriber of `topic`; returns how many."""
        subscribers = self._topics.get(topic)
        if not subscribers:
            return 0
        for subscriber in subscribers:
            subscriber.offer(value)
        return len(subscribers)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscriber[T]]:
        subscriber: Subscriber[T] = Subscriber()
        self._topics[topic].add(subscriber)
        try:
            yield subscriber
        finally:
            subscribers = self._topics.get(topic)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._topics[topic]

    def topics(self) -> list[str]:
        """The topics that have subscribers now."""
        return list(self._topics)

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._topics.values())

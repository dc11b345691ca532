"""In-process pub/sub for live subscriptions.

Each subscriber keeps only the newest value: a slow reader skips the values it
missed instead of queueing them, so it never holds up the publisher or the
other subscribers, and memory stays bounded.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import AbstractAsyncContextManager
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


class _Subscription(Generic[T]):
    """`async with broadcaster.subscribe(topic) as subscriber`: a class, not an
    @asynccontextmanager, whose generator and wrapper would cost each of
    thousands of open subscriptions about 700 bytes more."""

    __slots__ = ("_broadcaster", "_subscriber", "_topic")

    def __init__(self, broadcaster: Broadcaster[T], topic: str) -> None:
        self._broadcaster = broadcaster
        self._topic = topic
        self._subscriber: Subscriber[T] = Subscriber()

    async def __aenter__(self) -> Subscriber[T]:
        self._broadcaster._topics[self._topic].add(self._subscriber)
        return self._subscriber

    async def __aexit__(self, *exc_info: object) -> None:
        topics = self._broadcaster._topics
        subscribers = topics.get(self._topic)
        if subscribers is not None:
            subscribers.discard(self._subscriber)
            if not subscribers:
                del topics[self._topic]


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

    def subscribe(self, topic: str) -> AbstractAsyncContextManager[Subscriber[T]]:
        """`async with subscribe(topic) as subscriber`: `subscriber.next()`
        waits for the newest value published from then on."""
        return _Subscription(self, topic)

    def topics(self) -> list[str]:
        """The topics that have subscribers now."""
        return list(self._topics)

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._topics.values())

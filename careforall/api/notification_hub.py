"""Live notifications: a lifespan task that wakes the subscriptions of the
people who just got a notification.

Notifications are written by the dispatcher (and, on PostgreSQL, by the
dispatcher of any process), so this task looks for new rows instead of being
told: while anyone is subscribed, it reads the ids above the newest it has
seen, a few times a second (one primary-key range read; nothing at all while
nobody listens), and wakes each recipient's topic on an in-process
broadcaster. A woken subscription reads what is new for its own caller, so a
missed or repeated wake-up costs nothing but a read. Marking read wakes the
caller's other subscriptions directly (`touch`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from careforall.broadcaster import Broadcaster, Subscriber
from careforall.concurrency import in_thread
from careforall.db import Database
from careforall.services import notifications

log = logging.getLogger("careforall.notifications")

POLL_SECONDS = 0.2
BATCH = 500


def topic(scope: str) -> str:
    """The topic of one principal (`Principal.scope`: "user:…" or "anon:…")."""
    return f"notifications:{scope}"


class NotificationHub:
    def __init__(self, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._broadcaster: Broadcaster[int] = Broadcaster()
        self._poll_seconds = poll_seconds
        self._someone = asyncio.Event()
        # Newest notification id already announced; None while nobody listens.
        self._after: str | None = None
        self._wakes = 0

    @asynccontextmanager
    async def subscribe(self, scope: str) -> AsyncIterator[Subscriber[int]]:
        """Listen for `scope`; then read the caller's state and call `watch_from`."""
        async with self._broadcaster.subscribe(topic(scope)) as subscriber:
            self._someone.set()
            yield subscriber

    def watch_from(self, seen: str | None) -> None:
        """A new subscriber has read the feed as it was when `seen` was the
        newest notification id of all: announce whatever comes after it."""
        seen = seen or ""
        self._after = seen if self._after is None else min(self._after, seen)

    def touch(self, scope: str) -> None:
        """Wake `scope`'s subscriptions (on the event loop), e.g. after marking read."""
        self._wakes += 1
        self._broadcaster.publish(topic(scope), self._wakes)

    async def run(self, db: Database) -> None:
        """Poll for new notifications while anyone listens (a lifespan task)."""
        self._someone = asyncio.Event()  # of this loop (an app may start again)
        self._after = None
        while True:
            if self._broadcaster.subscriber_count == 0:
                self._after = None
                self._someone.clear()
                await self._someone.wait()
                continue
            if not await self._announce(db):
                await asyncio.sleep(self._poll_seconds)

    async def _announce(self, db: Database) -> bool:
        """Wake the recipients of what came after the mark; True when more wait."""
        after = self._after
        if after is None:
            return False
        try:
            found = await in_thread(partial(self._poll, db, after))
        except Exception:
            # The database may be away for a moment: keep the task alive.
            log.exception("notification poll failed; retrying")
            return False
        for scope in found.scopes:
            self.touch(scope)
        # Unless a new subscriber lowered the mark meanwhile (it is kept then).
        if found.newest_id is not None and self._after == after:
            self._after = found.newest_id
        return found.more

    @staticmethod
    def _poll(db: Database, after: str) -> notifications.Recipients:
        with db.read() as session:
            return notifications.recipients_after(session, after_id=after, limit=BATCH)

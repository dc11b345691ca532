"""Anonymous sessions' token versions, remembered by the one process that
serves an SQLite file.

Every request with a token checks that the token's version is still its
session's (a logout raises it). Guests make most requests, and reading the
version each time cost createPledge about a third of its throughput; so on
SQLite, where this process is the only writer of that column, the version
read is remembered. A logout in this process moves the epoch on, so a read
that began before the logout can never store the old version after it.
Where other processes may log a session out (PostgreSQL, SQLite served by
`serve --workers N`), nothing is remembered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

# About 100 bytes each: 100,000 guests seen lately hold about 10 MB.
DEFAULT_LIMIT = 100_000


class SessionVersions:
    def __init__(self, *, enabled: bool, limit: int = DEFAULT_LIMIT) -> None:
        self.enabled = enabled
        self._limit = limit
        self._known: OrderedDict[str, int] = OrderedDict()
        self._epoch = 0
        self._lock = threading.Lock()

    @property
    def epoch(self) -> int:
        """Read before reading a version from the database (see `remember`)."""
        return self._epoch

    def get(self, session_id: str) -> int | None:
        if not self.enabled:
            return None
        with self._lock:
            version = self._known.get(session_id)
            if version is not None:
                self._known.move_to_end(session_id)
            return version

    def remember(self, session_id: str, version: int, *, read_at: int) -> None:
        """Keep a version read from the database when the epoch was `read_at`;
        a logout since then may have raised it, so it is not kept then."""
        if not self.enabled:
            return
        with self._lock:
            if self._epoch != read_at:
                return
            self._known[session_id] = version
            self._known.move_to_end(session_id)
            while len(self._known) > self._limit:
                self._known.popitem(last=False)

    def ended(self, session_id: str) -> None:
        """A logout of this session committed: forget what was known of it,
        and of any read still under way."""
        with self._lock:
            self._epoch += 1
            self._known.pop(session_id, None)

"""SQLite's change feed: what one worker process commits, the others hear.

The counterpart of listener.py for `careforall serve --workers N` on an
SQLite file. Each process keeps one extra connection of its own and asks it
for `PRAGMA data_version` every POLL_SECONDS: the number changes when any
other connection (of any process) has committed, and asking costs no disk
read (SQLite compares a counter in the WAL's shared memory). When it changes,
the process's dispatcher wakes (new outbox events may be due), the response
cache's data version moves on, and the totals its subscribers watch are read
again and pushed where they changed (`on_totals(None)`: any campaign may have
changed). Only started when several processes serve: one process hears its
own commits directly.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing

from careforall.sqlite import data_version, watching_connection

log = logging.getLogger("careforall.listener")

# Processes see each other's commits within this long (plus the reads).
POLL_SECONDS = 0.01
MAX_RECONNECT_DELAY = 5.0


class ChangeFeed:
    """A thread that turns other connections' commits into calls, made in
    that thread, with the same interface as the PostgreSQL `Listener`:
    `on_outbox()` and `on_totals(None)` after every change seen, one after
    the other; `poke()` makes it look at once (this process has just
    settled totals)."""

    def __init__(
        self,
        path: str,
        *,
        on_outbox: Callable[[], None],
        on_totals: Callable[[dict[str, str | None] | None], None],
        interval: float = POLL_SECONDS,
    ) -> None:
        self._path = path
        self._on_outbox = on_outbox
        self._on_totals = on_totals
        self._interval = interval
        self._stop = threading.Event()
        self._poked = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="careforall-change-feed", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._poked.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def poke(self) -> None:
        """Thread-safe: look now rather than at the next poll."""
        self._poked.set()

    def _changed(self) -> None:
        for call in (self._on_outbox, lambda: self._on_totals(None)):
            try:
                call()
            except Exception:
                # A failed push must not end the feed.
                log.exception("change handling failed")

    def _run(self) -> None:
        delay = 0.1
        first = True
        while not self._stop.is_set():
            try:
                with closing(watching_connection(self._path)) as conn:
                    self.listening.set()
                    delay = 0.1
                    if not first:
                        log.info("following commits again after a lost connection")
                        self._changed()
                    first = False
                    self._follow(conn)
            except sqlite3.Error as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning(
                    "change feed lost its connection; reconnecting",
                    extra={"error": str(exc), "retry_in_seconds": delay},
                )
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
                first = False

    def _follow(self, conn: sqlite3.Connection) -> None:
        seen = data_version(conn)
        while not self._stop.is_set():
            self._poked.wait(self._interval)
            poked = self._poked.is_set()
            self._poked.clear()
            version = data_version(conn)
            if version != seen or poked:
                seen = version
                self._changed()

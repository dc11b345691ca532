"""Whether the database takes writes now (one part of readiness).

`SELECT 1` still answers while no write can pass: another process holds
SQLite's write lock past the busy timeout, the file is read-only, the disk is
full. So readiness also asks whether writes pass, and learns it two ways:

- from real writes: each commit that wrote events is a success
  (`Database.on_commit`), each write refused with a "not now" error (the lock
  wait ran out, read-only, disk full, I/O) a failure;
- from a probe: a no-op UPDATE of `alembic_version`, committed, because a
  write that is rolled back never reaches the disk and cannot meet a full one.

While writes flow (one succeeded in the last `FRESH_SECONDS` and none failed
since) no probe runs, so a loaded server never queues a probe behind its own
group-commit writer. Otherwise a probe runs at most every `PROBE_INTERVAL`
and waits at most `PROBE_LOCK_WAIT` for the lock. A lock the probe cannot get
is a fault only once it has been seen taken, with no write passing, for
longer than the busy timeout (the wait after which real writes fail), so a
writer that holds the lock for a moment never makes readiness flap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, column, event, table, update
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

from careforall.db import Database, sqlstate
from careforall.services.writer import is_busy
from careforall.sqlite import set_busy_timeout

log = logging.getLogger("careforall.health")

FRESH_SECONDS = 1.0
PROBE_INTERVAL = 0.25
PROBE_LOCK_WAIT = 0.1

LOCKED = "locked"

_VERSION = table("alembic_version", column("version_num"))
# Rewrites the one row with its own value: a real committed write, no change.
NO_OP_WRITE = update(_VERSION).values(version_num=_VERSION.c.version_num)


def refusal_kind(exc: BaseException) -> str:
    """A short word for why a write was refused (for logs and the verdict)."""
    state = sqlstate(exc)
    message = str(exc.orig if isinstance(exc, DBAPIError) else exc)
    if state == "55P03" or "locked" in message or "busy" in message:
        return LOCKED
    if state == "25006" or "readonly" in message:
        return "read-only"
    if state == "53100" or "disk is full" in message:
        return "disk full"
    return "unavailable"


class WriteHealth:
    """What writes met lately, and a probe when that says too little.

    Thread-safe: writes report from any thread, readiness asks from any.
    """

    def __init__(
        self,
        db: Database,
        *,
        busy_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._probing = threading.Lock()
        self._local = threading.local()
        self._ok_at: float | None = None
        # Since the last success: a fault other than the lock (read-only, disk
        # full, ...), and since when the lock has been seen taken.
        self._fault: str | None = None
        self._locked_since: float | None = None
        self._probed_at: float | None = None
        self._was_writable = True
        self.probes = 0

    @classmethod
    def watching(cls, db: Database, *, busy_timeout: float) -> WriteHealth:
        """One that hears of every commit and every refused write on `db`."""
        health = cls(db, busy_timeout=busy_timeout)
        db.on_commit(health.succeeded)
        event.listen(db.engine, "handle_error", health._on_error)
        return health

    # --- what writes report -------------------------------------------------

    def succeeded(self) -> None:
        """A write committed: the database took writes just now."""
        with self._lock:
            self._ok_at = self._clock()
            self._fault = None
            self._locked_since = None

    def refused(self, kind: str, *, waited: float) -> None:
        """A write failed with `kind` after waiting `waited` seconds for the lock."""
        now = self._clock()
        with self._lock:
            if kind != LOCKED:
                self._fault = kind
                return
            since = now - waited
            if self._locked_since is None or since < self._locked_since:
                self._locked_since = since

    def _on_error(self, context: ExceptionContext) -> None:
        exc = context.sqlalchemy_exception
        if getattr(self._local, "probing", False):
            return  # the probe reports its own outcome
        if isinstance(exc, OperationalError) and is_busy(exc):
            # A real write waits the whole busy timeout before it fails.
            self.refused(refusal_kind(exc), waited=self._busy_timeout)

    # --- the verdict ----------------------------------------------------------

    def writable(self) -> bool:
        """Whether writes pass now; may run a short probe (blocking)."""
        now = self._clock()
        with self._lock:
            flowing = (
                self._all_clear()
                and self._ok_at is not None
                and now - self._ok_at < FRESH_SECONDS
            )
            due = self._probed_at is None or now - self._probed_at >= PROBE_INTERVAL
        # One probe at a time; callers meanwhile take what is known.
        if not flowing and due and self._probing.acquire(blocking=False):
            try:
                self._probe()
            finally:
                self._probing.release()
        writable, reason = self._verdict()
        self._report(writable, reason)
        return writable

    def _all_clear(self) -> bool:
        return self._fault is None and self._locked_since is None

    def _verdict(self) -> tuple[bool, str | None]:
        now = self._clock()
        with self._lock:
            if self._fault is not None:
                return False, self._fault
            if self._locked_since is not None:
                held = now - self._locked_since
                return held < self._busy_timeout, f"locked for {held:.1f}s"
            return True, None

    def _report(self, writable: bool, reason: str | None) -> None:
        with self._lock:
            changed = writable != self._was_writable
            self._was_writable = writable
        if changed and not writable:
            log.warning("database refuses writes", extra={"reason": reason})
        elif changed:
            log.info("database takes writes again")

    # --- the probe ----------------------------------------------------------------

    def _probe(self) -> None:
        wait = min(PROBE_LOCK_WAIT, self._busy_timeout)
        began = self._clock()
        self._local.probing = True
        self.probes += 1
        try:
            with self._db.write_connection() as conn:
                raw: Any = conn.connection.driver_connection
                sqlite = conn.dialect.name == "sqlite"
                if sqlite:  # outside a transaction, so no lock is taken yet
                    (usual,) = raw.execute("PRAGMA busy_timeout").fetchone()
                    set_busy_timeout(raw, int(wait * 1000))
                try:
                    with conn.begin():
                        conn.execute(NO_OP_WRITE)
                finally:
                    if sqlite:
                        _set_busy_timeout(conn, raw, int(usual))
        except Exception as exc:
            self.refused(refusal_kind(exc), waited=self._clock() - began)
        else:
            self.succeeded()
        finally:
            self._local.probing = False
            with self._lock:
                self._probed_at = self._clock()


def _set_busy_timeout(conn: Connection, raw: Any, milliseconds: int) -> None:
    """Back to what every write expects before the connection returns to the pool."""
    try:
        set_busy_timeout(raw, milliseconds)
    except Exception:
        conn.invalidate()  # never reused with the probe's short wait
        raise

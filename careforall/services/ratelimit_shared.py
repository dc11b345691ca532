"""Token buckets shared by the processes of one server, in a small SQLite file.

`careforall serve --workers N` runs N processes behind one port; a client's
calls land on any of them, so each process counting on its own would let a
guesser try N times as often. Here every process keeps its buckets in one
file: each hit is one short write transaction (BEGIN IMMEDIATE), so two
processes never both take the last token.

The file is not the application's database: it holds nothing but counts, in
WAL mode with `synchronous=OFF`. Losing the last counts in a crash only
gives callers full buckets again, which a restart does anyway.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from careforall.domain.errors import ServiceBusy
from careforall.services.ratelimit import (
    DEFAULT_MAX_KEYS,
    Checks,
    refill,
    wait_seconds,
)
from careforall.settings import Rate

# Full buckets are deleted (a missing key is a full bucket) once every this
# many writes of one process, so the file holds the keys still counting.
PRUNE_EVERY = 1000
# How long a process waits for another's transaction (each lasts microseconds).
BUSY_TIMEOUT_SECONDS = 5.0

_SCHEMA = (
    # `full_at`: when the bucket is full again and its row may go.
    "CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, "
    "tokens REAL NOT NULL, at REAL NOT NULL, full_at REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS buckets_full_at ON buckets (full_at)",
)
_UPSERT = (
    "INSERT INTO buckets (key, tokens, at, full_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, "
    "at = excluded.at, full_at = excluded.full_at"
)

# A bucket read within a transaction: key -> (tokens, at).
_State = dict[str, tuple[float, float]]


class SharedRateLimiter:
    """The in-process `RateLimiter`'s buckets, kept in the SQLite file `path`
    that every limiter on it shares (in this process or others).

    Same answers as `RateLimiter` for the same calls. Storage is bounded: full
    buckets are pruned, and past `max_keys` the buckets nearest to full go
    first (each then starts full again, as an evicted key does in one
    process). The clock is wall time, which every process agrees on.
    """

    def __init__(
        self,
        path: str | Path,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.time,
        prune_every: int = PRUNE_EVERY,
    ) -> None:
        self.path = Path(path)
        self.max_keys = max_keys
        self.prune_every = prune_every
        self.clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._writes = 0

    def __len__(self) -> int:
        with self._lock:
            row = self._connection().execute("SELECT count(*) FROM buckets").fetchone()
        return int(row[0])

    def hit(self, checks: Checks, require: Checks = ()) -> int | None:
        """As `RateLimiter.hit`: one token from each of `checks`, or none."""
        keys = [key for key, _ in (*checks, *require)]
        with self._transaction() as conn:
            now = self.clock()
            state = self._read(conn, keys)
            wait = max(
                (
                    wait_seconds(tokens, rate)
                    for key, rate in (*checks, *require)
                    if (tokens := _tokens(state, key, rate, now)) < 1
                ),
                default=None,
            )
            if wait is not None:
                return max(1, math.ceil(wait))
            for key, rate in checks:
                state[key] = (_tokens(state, key, rate, now) - 1, now)
            self._write(conn, state, checks, now)
        return None

    def take(self, checks: Checks) -> None:
        """As `RateLimiter.take`: one token from each bucket, down to empty."""
        with self._transaction() as conn:
            now = self.clock()
            state = self._read(conn, [key for key, _ in checks])
            for key, rate in checks:
                state[key] = (max(0.0, _tokens(state, key, rate, now) - 1), now)
            self._write(conn, state, checks, now)

    def give_back(self, checks: Checks) -> None:
        """As `RateLimiter.give_back`: one token to each bucket, up to full."""
        with self._transaction() as conn:
            now = self.clock()
            state = self._read(conn, [key for key, _ in checks])
            for key, rate in checks:
                tokens = min(float(rate.count), _tokens(state, key, rate, now) + 1)
                state[key] = (tokens, now)
            self._write(conn, state, checks, now)

    def empty(self, key: str, rate: Rate) -> bool:
        """Whether the key's bucket has no whole token (adds no key)."""
        with self._lock:
            state = self._read(self._connection(), [key])
            return _tokens(state, key, rate, self.clock()) < 1

    def reset(self) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM buckets")

    def prune(self) -> None:
        """Delete full buckets, then the nearest to full past `max_keys`."""
        with self._transaction() as conn:
            self._prune(conn, self.clock())

    def open(self) -> None:
        """Open the file now, so one that cannot be used stops the start
        (RuntimeError) rather than every limited call later."""
        try:
            with self._lock:
                self._connection()
        except sqlite3.Error as exc:
            raise RuntimeError(
                f"CAREFORALL_RATE_LIMIT_STORE: cannot count in {self.path}: {exc}"
            ) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- the file ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """Opened on first use, in the process that uses it (the app is built
        before uvicorn starts its workers' loops)."""
        if self._conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,  # transactions are begun here, explicitly
                check_same_thread=False,  # guarded by self._lock
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # counts, not money
            for statement in _SCHEMA:
                conn.execute(statement)
            self._conn = conn
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed unless the block raises; another
        process's transaction holding the file past the busy timeout is an
        overload, answered as one (SERVICE_BUSY, nothing changed)."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise ServiceBusy() from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _read(conn: sqlite3.Connection, keys: list[str]) -> _State:
        marks = ",".join("?" * len(keys))
        rows = conn.execute(
            f"SELECT key, tokens, at FROM buckets WHERE key IN ({marks})", keys
        )
        return {key: (tokens, at) for key, tokens, at in rows}

    def _write(
        self, conn: sqlite3.Connection, state: _State, checks: Checks, now: float
    ) -> None:
        rows = {}
        for key, rate in checks:
            tokens, at = state[key]
            full_at = at + (rate.count - tokens) * rate.seconds / rate.count
            rows[key] = (key, tokens, at, full_at)
        conn.executemany(_UPSERT, rows.values())
        self._writes += 1
        if self._writes % self.prune_every == 0:
            self._prune(conn, now)

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM buckets WHERE full_at <= ?", (now,))
        (count,) = conn.execute("SELECT count(*) FROM buckets").fetchone()
        if count > self.max_keys:
            conn.execute(
                "DELETE FROM buckets WHERE key IN "
                "(SELECT key FROM buckets ORDER BY full_at LIMIT ?)",
                (count - self.max_keys,),
            )


def _tokens(state: _State, key: str, rate: Rate, now: float) -> float:
    """The key's tokens at `now` (a key not stored is a full bucket)."""
    if key not in state:
        return float(rate.count)
    tokens, at = state[key]
    return refill(tokens, at, now, rate)

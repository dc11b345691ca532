"""SQLite: the dialect, the connection settings and the write lock.

SQLite runs in WAL mode with `synchronous=FULL` (an acknowledged commit
survives a power cut), foreign keys on and a busy timeout. Write transactions
start with `BEGIN IMMEDIATE`, so two writers queue on the lock instead of one
failing when it upgrades a read to a write; reads begin with a plain BEGIN.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import DBAPIError, OperationalError

from careforall.settings import Settings

_IMMEDIATE = "careforall_immediate"
_WAITERS = "careforall_write_waiters"


class WriteWaiters:
    """How many of this process's connections wait to write (their turn, then
    SQLite's write lock).

    A writer that commits and begins again at once (the group-commit writer
    under load) could pass the others; it lets them in first
    (`wait_until_none`).
    """

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def wait_until_none(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)


class Turns:
    """A lock that its holder hands straight to the longest waiting thread.

    A plain `threading.Lock` lets a thread that comes along take it before
    the woken waiter runs, so under steady writes one thread (a readiness
    probe, the dispatcher) could wait its whole timeout; here each waits
    its turn in the order it came.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Lock] = deque()

    def acquire(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for the turn; False if it did not come."""
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            handed = threading.Lock()
            handed.acquire()
            self._waiting.append(handed)
        if handed.acquire(timeout=max(timeout, 0.0)):
            return True
        with self._mutex:
            if handed in self._waiting:
                self._waiting.remove(handed)
                return False
        # Handed over just as the wait ran out: it is this thread's now.
        return True

    def release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().release()  # still held, by the next
            else:
                self._held = False


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Statement journals and sorts in memory: on disk, a write batch made
        # and deleted a temporary file about every second pledge.
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return on_connect


class TakingTurns(sqlite3.Connection):
    """A driver connection that waits its turn to write, handed over at once.

    SQLite's busy handler polls for a taken write lock with ever longer
    sleeps (1, 2, 5, 10 ... up to 100 ms), so a writer that arrives while
    another holds the lock sleeps well past its release: in one process the
    group-commit writer and the outbox dispatcher, each committing many
    times a second, would leave the lock idle between them and add those
    sleeps to every waiting request. Instead each write transaction first
    takes its engine's turn (`Turns`), which its releaser hands straight to
    the longest waiting thread of this process, and gives it back after COMMIT or
    ROLLBACK (the dialect's `do_commit`, `do_rollback`).

    Several processes serving one file (`serve --workers N`) take turns
    across processes too: the turn then also holds an exclusive `flock` on
    `<database>.writer`, through a descriptor of each connection, which the
    kernel hands to a waiting process as soon as it is released (and drops
    when a process dies). Other programs writing the file (a `careforall`
    command) still meet SQLite's own lock and busy handler.
    """

    turns_path: str = ""  # several processes: the file they flock
    turn: Turns  # this engine's turn, shared by its connections
    turn_timeout: float = 5.0  # seconds; the connection's busy timeout
    _fd: int | None = None
    holds_turn = False

    def take_turn(self) -> None:
        """Wait for the turn; past the busy timeout, go on without it (SQLite's
        lock and busy handler still decide, and refuse through SQLAlchemy's
        error handling as every refused write is)."""
        if not self.turn.acquire(timeout=self.turn_timeout):
            return
        try:
            if self.turns_path:
                if self._fd is None:
                    self._fd = os.open(self.turns_path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self.turn.release()
            raise
        self.holds_turn = True

    def end_turn(self) -> None:
        if not self.holds_turn:
            return
        self.holds_turn = False
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self.turn.release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.holds_turn:
                self.holds_turn = False
                self.turn.release()
            if self._fd is not None:
                os.close(self._fd)  # drops the flock too
                self._fd = None


def set_busy_timeout(raw: sqlite3.Connection, milliseconds: int) -> None:
    """How long a write on this driver connection waits for the lock: its
    turn (TakingTurns) and SQLite's own busy timeout. Outside a transaction."""
    raw.execute(f"PRAGMA busy_timeout={int(milliseconds)}")
    if isinstance(raw, TakingTurns):
        raw.turn_timeout = milliseconds / 1000


def _sqlite_begin(conn: Any) -> None:
    options = conn.get_execution_options()
    if not options.get(_IMMEDIATE, False):
        # A read: BEGIN cannot wait for a lock, so it goes straight to the
        # driver (SQLAlchemy's statement machinery doubled a one-row read).
        _run_plain(conn, "BEGIN")
        return
    waiters: WriteWaiters | None = options.get(_WAITERS)
    if waiters is None:
        _begin_immediate(conn)
        return
    with waiters.waiting():
        _begin_immediate(conn)


def _begin_immediate(conn: Any) -> None:
    raw = conn.connection.dbapi_connection
    if not isinstance(raw, TakingTurns):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    raw.take_turn()
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        raw.end_turn()
        raise


class SQLiteDialect(SQLiteDialect_pysqlite):
    """pysqlite, with savepoint statements sent straight to the driver.

    SQLAlchemy compiles and runs SAVEPOINT, RELEASE and ROLLBACK TO like any
    query, about 20 µs of Python each, and every request the group-commit
    writer runs (and every event the dispatcher settles) takes one savepoint:
    that was a fifth of a createPledge's cost in the writer. These three
    statements take no parameters and return no rows, so nothing is lost.
    """

    supports_statement_cache = True

    def do_savepoint(self, connection: Connection, name: str) -> None:
        _run_plain(connection, f'SAVEPOINT "{name}"')

    def do_release_savepoint(self, connection: Connection, name: str) -> None:
        _run_plain(connection, f'RELEASE SAVEPOINT "{name}"')

    def do_rollback_to_savepoint(self, connection: Connection, name: str) -> None:
        _run_plain(connection, f'ROLLBACK TO SAVEPOINT "{name}"')

    def do_commit(self, dbapi_connection: Any) -> None:
        try:
            super().do_commit(dbapi_connection)  # type: ignore[no-untyped-call]
        finally:
            _end_turn(dbapi_connection)

    def do_rollback(self, dbapi_connection: Any) -> None:
        try:
            super().do_rollback(dbapi_connection)  # type: ignore[no-untyped-call]
        finally:
            _end_turn(dbapi_connection)


def _end_turn(connection: Any) -> None:
    # The pool's reset on return passes its wrapper, not the driver's object.
    raw = getattr(connection, "dbapi_connection", connection)
    if isinstance(raw, TakingTurns):
        raw.end_turn()


def _run_plain(connection: Connection, statement: str) -> None:
    # Past SQLAlchemy's error events: these statements fail only when the
    # transaction is already lost, which the statements around them report.
    try:
        connection.connection.dbapi_connection.execute(statement)  # type: ignore[union-attr]
    except sqlite3.Error as exc:
        # The same exception SQLAlchemy would raise (the writer reads it).
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


registry.register("sqlite.careforall", __name__, "SQLiteDialect")


def make_sqlite_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url).set(drivername="sqlite+careforall")
    connect_args: dict[str, Any] = {
        "check_same_thread": False,
        "timeout": settings.busy_timeout_ms / 1000,
    }
    if url.database and url.database != ":memory:":
        # This engine's write transactions take turns (TakingTurns); those
        # of several processes on one file, across processes too.
        several = settings.workers > 1
        path = url.database + ".writer" if several else ""

        class Connection(TakingTurns):
            turns_path = path
            turn = Turns()
            turn_timeout = settings.busy_timeout_ms / 1000

        connect_args["factory"] = Connection
    engine = create_engine(url, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_pragmas(settings.busy_timeout_ms))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def write_options(waiters: WriteWaiters) -> dict[str, Any]:
    """Execution options that make an engine's transactions write ones."""
    return {_IMMEDIATE: True, _WAITERS: waiters}


class TransactionLost(OperationalError):
    """The database ended a write transaction by itself (disk full, I/O)."""


def check_still_open(connection: Connection) -> None:
    """Fail the whole transaction's work if SQLite rolled it back on its own.

    After a disk-full or I/O error SQLite may roll back the entire transaction;
    the work before it would then be lost while the final COMMIT succeeds
    trivially, and statements after it would each commit on their own.
    """
    raw = connection.connection.dbapi_connection
    if getattr(raw, "in_transaction", True) is False:
        raise TransactionLost(
            "the write transaction was rolled back by the database", None, Exception()
        )


def watching_connection(path: str) -> sqlite3.Connection:
    """A plain driver connection for `data_version` (the change feed's): in
    autocommit mode, so it never holds a read transaction open (which would
    keep the WAL from being checkpointed)."""
    return sqlite3.connect(path, isolation_level=None, timeout=5.0)


def data_version(connection: sqlite3.Connection) -> int:
    """SQLite's `PRAGMA data_version`: a number that changes when another
    connection, of any process, has committed; reading it costs no disk read
    (a counter in the WAL's shared memory)."""
    row = connection.execute("PRAGMA data_version").fetchone()
    return int(row[0])

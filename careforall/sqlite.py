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
    """How many of this process's connections wait for SQLite's write lock.

    SQLite's busy handler polls with growing sleeps, so a writer that commits
    and begins again at once (the group-commit writer under load) could starve
    the others; it lets them in first (`wait_until_none`).
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


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return on_connect


class TakingTurns(sqlite3.Connection):
    """A driver connection that takes its turn to write, across processes.

    Several processes serving one file (`serve --workers N`) would otherwise
    queue for SQLite's write lock through its busy handler, which sleeps ever
    longer between tries (up to 100 ms): a writer that commits and begins
    again at once (the group-commit writer) then keeps the lock from the
    other process for seconds. Instead each write transaction first takes an
    exclusive `flock` on `<database>.writer`, through a descriptor of its own
    (so threads of one process queue too), which the kernel hands to a
    waiter as soon as it is released, and releases it after COMMIT or
    ROLLBACK (the dialect's `do_commit`, `do_rollback`). The kernel drops the
    lock of a process that dies.
    """

    turns_path: str = ""
    _fd: int | None = None
    holds_turn = False

    def take_turn(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.turns_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.holds_turn = True

    def end_turn(self) -> None:
        if self.holds_turn and self._fd is not None:
            self.holds_turn = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._fd is not None:
                os.close(self._fd)  # drops the lock too
                self._fd = None
                self.holds_turn = False


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
    if settings.workers > 1 and url.database and url.database != ":memory:":
        # Several processes write the file: they take turns (TakingTurns).
        path = url.database + ".writer"

        class Connection(TakingTurns):
            turns_path = path

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

"""SQLite: the dialect, the connection settings and the write lock.

SQLite runs in WAL mode with `synchronous=FULL` (an acknowledged commit
survives a power cut), foreign keys on and a busy timeout. Write transactions
start with `BEGIN IMMEDIATE`, so two writers queue on the lock instead of one
failing when it upgrades a read to a write; reads begin with a plain BEGIN.
"""

from __future__ import annotations

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


def _sqlite_begin(conn: Any) -> None:
    options = conn.get_execution_options()
    if not options.get(_IMMEDIATE, False):
        # A read: BEGIN cannot wait for a lock, so it goes straight to the
        # driver (SQLAlchemy's statement machinery doubled a one-row read).
        _run_plain(conn, "BEGIN")
        return
    waiters: WriteWaiters | None = options.get(_WAITERS)
    if waiters is None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    with waiters.waiting():
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
    engine = create_engine(
        make_url(settings.database_url).set(drivername="sqlite+careforall"),
        connect_args={
            "check_same_thread": False,
            "timeout": settings.busy_timeout_ms / 1000,
        },
    )
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

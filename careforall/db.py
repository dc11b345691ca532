"""Engine, sessions and migrations.

SQLite runs in WAL mode with `synchronous=FULL` (an acknowledged commit
survives a power cut), foreign keys on and a busy timeout. Write transactions
start with `BEGIN IMMEDIATE`, so two writers queue on the lock instead of one
failing when it upgrades a read to a write.

PostgreSQL (psycopg 3) runs at READ COMMITTED: the services lock the rows they
read to change (`SELECT ... FOR UPDATE`, a no-op on SQLite, where the write
lock already serializes writers), unique constraints decide races, and
`LISTEN/NOTIFY` tells every process of new events and changed totals.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Table,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from careforall.direct import Direct
from careforall.settings import Settings

_IMMEDIATE = "careforall_immediate"
_WAITERS = "careforall_write_waiters"
# Marks a pooled connection that committed since it was checked out.
_COMMITTED = "careforall_committed"
# Data versions are unique in the process, across Database objects: a value
# kept from an earlier start of the app can never match a current one.
_DATA_VERSIONS = itertools.count(1)

# PostgreSQL channels (see careforall/outbox/listener.py).
OUTBOX_CHANNEL = "careforall_outbox"
TOTALS_CHANNEL = "careforall_totals"
# The advisory lock that keeps a reconcile apart from the dispatchers.
_TOTALS_LOCK_KEY = 0x43464154  # "CFAT"
# PostgreSQL's limit on a notification's payload is 8000 bytes.
_NOTIFY_PAYLOAD_BYTES = 7000

# SQLSTATEs after which the transaction was rolled back and a retry may pass:
# serialization failure and deadlock (retried at once, see Runtime.write).
RETRY_SQLSTATES = frozenset({"40001", "40P01"})
# ... and those that mean "not now": lock or statement timeout, too many
# connections, a read-only server (a standby), a full disk, a lost connection.
BUSY_SQLSTATES = RETRY_SQLSTATES | frozenset(
    {"55P03", "57014", "53300", "53100", "25006", "57P01", "57P03"}
)


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind a SQLAlchemy error, if there is one."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None)
    return state if isinstance(state, str) else None


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


def make_engine(settings: Settings) -> Engine:
    if settings.is_sqlite:
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
    return create_engine(
        settings.database_url,
        pool_pre_ping=True,
        # Requests run in a thread pool of 40; the dispatcher, the webhook
        # sender and the listener need a few more.
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.busy_timeout_ms / 1000,
        connect_args={
            "application_name": "careforall",
            # A lock wait past the busy timeout is an overload, as on SQLite.
            "options": f"-c lock_timeout={int(settings.busy_timeout_ms)}",
        },
    )


class Database:
    """The engine plus the two ways in: read sessions and write transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self.write_waiters = WriteWaiters()
        self._write_engine = engine.execution_options(
            **{_IMMEDIATE: True, _WAITERS: self.write_waiters}
        )
        self._commit_listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._disposed = False
        self._data_version = next(_DATA_VERSIONS)
        event.listen(engine, "commit", self._committing)
        event.listen(engine, "checkin", self._checked_in)

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit that wrote outbox events."""
        with self._lock:
            self._commit_listeners.append(listener)

    def notify_commit(self) -> None:
        for listener in list(self._commit_listeners):
            listener()

    @property
    def data_version(self) -> int:
        """A number that changes whenever data may have changed.

        Bumped as this process begins a commit and again once that connection
        is back in the pool (after the commit, before the writer's answer is
        sent), and by `data_changed_elsewhere()`. A value read before a read
        that is still current after it means no commit of this process can
        have happened in between (the response cache relies on this).
        """
        return self._data_version

    def data_changed_elsewhere(self) -> None:
        """Another process committed (PostgreSQL notifications)."""
        self._bump_data_version()

    def _bump_data_version(self) -> None:
        with self._lock:
            self._data_version = next(_DATA_VERSIONS)

    def totals_lock(self, session: Session, *, exclusive: bool) -> None:
        """PostgreSQL: a transaction-long advisory lock on the totals.

        Dispatchers take it shared (they lock rows in id order and cannot
        deadlock with each other); a reconcile, which rewrites every ledger
        and totals row, takes it alone. SQLite's write lock already does this.
        """
        if not self.is_postgres:
            return
        function = (
            "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        )
        session.execute(text(f"SELECT {function}(:key)"), {"key": _TOTALS_LOCK_KEY})

    def notify_others(self, session: Session, channel: str, payload: str = "") -> None:
        """PostgreSQL: tell every process's listener, when this transaction commits.

        A payload longer than PostgreSQL allows is sent in comma-separated parts.
        """
        if not self.is_postgres:
            return
        for part in _payload_parts(payload):
            session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": channel, "payload": part},
            )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def write_session(self) -> Session:
        return Session(self._write_engine, expire_on_commit=False)

    def write_connection(self) -> Connection:
        """A connection whose transactions are write transactions (group commit)."""
        return self._write_engine.connect()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self._disposed = True
        self.engine.dispose()

    def _committing(self, connection: Connection) -> None:
        self._bump_data_version()
        connection.info[_COMMITTED] = True

    def _checked_in(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(_COMMITTED, False):
            # The commit has finished: reads from before it are stale.
            self._bump_data_version()
        if self._disposed:
            # A connection given back after dispose() (a worker thread that
            # outlived shutdown) is closed, not kept open in a pool no one uses.
            dbapi_connection.close()


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


class InsertUnlessPresent:
    """`INSERT ... ON CONFLICT (columns) DO NOTHING` for either database: a row
    already there (committed, or written earlier in this transaction) makes it
    write nothing, and `run` says so."""

    def __init__(self, table: Table, *columns: str) -> None:
        # RETURNING tells whether a row was written: psycopg reports no
        # rowcount (-1) for these statements.
        written = table.c[columns[0]]
        self._quiet: dict[str, Insert] = {
            name: make(table).on_conflict_do_nothing(index_elements=list(columns))
            for name, make in (
                ("sqlite", sqlite_insert),
                ("postgresql", postgresql_insert),
            )
        }
        self._by_dialect = {
            name: Direct(statement.returning(written))
            for name, statement in self._quiet.items()
        }

    def run(self, connection: Connection, values: dict[str, Any]) -> bool:
        """Insert `values`; False when a row with those columns was there."""
        statement = self._by_dialect[connection.dialect.name]
        return statement.first(connection, values) is not None

    def run_many(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert each of `rows` that is not there yet (without RETURNING, so
        the rows go to the driver's executemany)."""
        if rows:
            connection.execute(self._quiet[connection.dialect.name], list(rows))


def _payload_parts(payload: str) -> list[str]:
    if len(payload.encode()) <= _NOTIFY_PAYLOAD_BYTES:
        return [payload]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for item in payload.split(","):
        if current and size + len(item.encode()) + 1 > _NOTIFY_PAYLOAD_BYTES:
            parts.append(",".join(current))
            current, size = [], 0
        current.append(item)
        size += len(item.encode()) + 1
    parts.append(",".join(current))
    return parts


def _resource_dir(name: str) -> Path:
    """A folder shipped inside the package, or beside it in a source checkout."""
    packaged = Path(str(resources.files("careforall"))) / name
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / name


def migrations_dir() -> Path:
    return _resource_dir("migrations")


def web_dir() -> Path:
    return _resource_dir("web")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def run_migrations(settings: Settings) -> None:
    """Bring the database to the newest schema (creating the file if needed)."""
    engine = make_engine(settings)
    try:
        with engine.begin() as connection:
            config = alembic_config(settings.database_url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()

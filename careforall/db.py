"""Engine, sessions and migrations.

SQLite's side (the dialect, its settings, the write lock) is in
careforall/sqlite.py.

PostgreSQL (psycopg 3) runs at READ COMMITTED: the services lock the rows they
read to change (`SELECT ... FOR UPDATE`, a no-op on SQLite, where the write
lock already serializes writers), unique constraints decide races, and
`LISTEN/NOTIFY` tells every process of new events and changed totals.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Table,
    create_engine,
    event,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col
from sqlmodel.sql.expression import SelectOfScalar

from careforall.direct import Direct, Readers
from careforall.session_versions import SessionVersions
from careforall.settings import Settings
from careforall.sqlite import WriteWaiters, make_sqlite_engine, write_options

M = TypeVar("M", bound=Any)

# Marks a pooled connection that committed since it was checked out.
_COMMITTED = "careforall_committed"
# Marks a transaction whose writes change no public answer (keep_answers).
_KEEPS_ANSWERS = "careforall_keeps_answers"
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


def make_engine(settings: Settings) -> Engine:
    if settings.is_sqlite:
        return make_sqlite_engine(settings)
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

    def __init__(self, engine: Engine, *, processes: int = 1) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        # Whether other server processes write this database too: PostgreSQL
        # always may; an SQLite file when `serve --workers` runs several.
        self.shared = self.is_postgres or processes > 1
        self.write_waiters = WriteWaiters()
        # One process writes an SQLite file: it may remember guests' versions
        # (a sign-out in another process must be refused here at once).
        self.session_versions = SessionVersions(enabled=not self.shared)
        self._write_engine = engine.execution_options(
            **write_options(self.write_waiters)
        )
        self._commit_listeners: list[Callable[[], None]] = []
        self._due_listeners: list[Callable[[], None]] = []
        self._mail_listeners: list[Callable[[], None]] = []
        self._mails_to_write_listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._disposed = False
        self._data_version = next(_DATA_VERSIONS)
        # Driver connections for the single reads of the busiest page
        # (services/totals.py campaign_totals), outside the pool.
        self.readers = Readers(engine)
        event.listen(engine, "commit", self._committing)
        event.listen(engine, "rollback", self._rolling_back)
        event.listen(engine, "checkin", self._checked_in)

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit that wrote outbox events."""
        with self._lock:
            self._commit_listeners.append(listener)

    def on_events_due(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit that wrote outbox events for the
        dispatcher to deliver (not only record-only ones)."""
        with self._lock:
            self._due_listeners.append(listener)

    def notify_commit(self, *, events_due: bool = True) -> None:
        for listener in list(self._commit_listeners):
            listener()
        if events_due:
            for listener in list(self._due_listeners):
                listener()

    def on_mail_queued(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after a commit that queued mails (the mail sender's
        wake-up); returns what stops the calls."""
        with self._lock:
            self._mail_listeners.append(listener)

        def stop() -> None:
            with self._lock:
                if listener in self._mail_listeners:
                    self._mail_listeners.remove(listener)

        return stop

    def mail_queued(self) -> None:
        """Mails were committed to send now (thread-safe)."""
        for listener in list(self._mail_listeners):
            listener()

    def on_mails_to_write(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after a commit that left mails for the periodic
        writer (a campaign update's); returns what stops the calls."""
        with self._lock:
            self._mails_to_write_listeners.append(listener)

        def stop() -> None:
            with self._lock:
                if listener in self._mails_to_write_listeners:
                    self._mails_to_write_listeners.remove(listener)

        return stop

    def mails_to_write(self) -> None:
        """Mails were committed for the periodic writer to write (thread-safe)."""
        for listener in list(self._mails_to_write_listeners):
            listener()

    @property
    def data_version(self) -> int:
        """A number that changes whenever data may have changed.

        Bumped as this process begins a commit and again once that connection
        is back in the pool (after the commit, before the writer's answer is
        sent), and by `data_changed_elsewhere()`. A value read before a read
        that is still current after it means no commit of this process that
        may change a public answer can have happened in between (the response
        cache relies on this); see `keep_answers` for the commits that cannot.
        """
        return self._data_version

    def keep_answers(self, connection: Connection) -> None:
        """The transaction open on `connection` writes nothing a public answer
        reads (a new PENDING pledge, its history, its outbox event; outbox
        events marked delivered), so its commit leaves the data version alone.

        A stampede of new pledges on a busy campaign would otherwise end the
        response cache's answers many times a second, and every read of the
        campaign's page would be executed again. Say so only when sure: an
        answer kept past a change it should show stays wrong until
        `CAREFORALL_RESPONSE_CACHE_SECONDS` end it.
        """
        connection.info[_KEEPS_ANSWERS] = True

    def data_changed_elsewhere(self) -> None:
        """Another process committed (PostgreSQL's notifications, SQLite's
        change feed)."""
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

    def notify_others(
        self, session: Session | Connection, channel: str, payload: str = ""
    ) -> None:
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
        self.readers.close()
        self.engine.dispose()

    def _committing(self, connection: Connection) -> None:
        if connection.info.pop(_KEEPS_ANSWERS, False):
            return
        self._bump_data_version()
        connection.info[_COMMITTED] = True

    def _rolling_back(self, connection: Connection) -> None:
        # The info lives as long as the pooled connection: the next
        # transaction on it starts without the mark.
        connection.info.pop(_KEEPS_ANSWERS, None)

    def _checked_in(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info.pop(_KEEPS_ANSWERS, None)
        if record is not None and record.info.pop(_COMMITTED, False):
            # The commit has finished: reads from before it are stale.
            self._bump_data_version()
        if self._disposed:
            # A connection given back after dispose() (a worker thread that
            # outlived shutdown) is closed, not kept open in a pool no one uses.
            dbapi_connection.close()


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


def lease_due(db: Database, query: SelectOfScalar[M], until: datetime) -> list[M]:
    """Several processes: the rows of `query` (due work of a table with `id`
    and `next_attempt_at`) that no other process holds, kept for this one by
    moving their next attempt to `until`; a process that dies with them leaves
    them to the others then. PostgreSQL skips the rows others have locked;
    on SQLite the write transaction (BEGIN IMMEDIATE) keeps the others out
    until the lease is written."""
    model = query.column_descriptions[0]["entity"]
    with db.write_session() as session:
        rows = list(session.exec(query.with_for_update(skip_locked=True)).all())
        if rows:
            session.execute(
                update(model)
                .where(col(model.id).in_([row.id for row in rows]))
                .values(next_attempt_at=until)
            )
            session.commit()
    return rows


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
    """Bring the database to the newest schema (creating the file if needed).

    On SQLite, foreign keys are off while the migrations run: a migration that
    rebuilds a table (copy, drop, rename: how SQLite alters a constraint)
    could not drop one that other rows reference. Every reference is checked
    before the migrations commit, and a broken one stops them.
    """
    engine = make_engine(settings)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as connection:
            if sqlite:
                # Before the transaction: SQLite ignores this pragma inside one.
                _foreign_keys(connection, on=False)
            try:
                with connection.begin():
                    config = alembic_config(settings.database_url)
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                    if sqlite:
                        broken = connection.exec_driver_sql(
                            "PRAGMA foreign_key_check"
                        ).all()
                        if broken:
                            raise RuntimeError(
                                f"migrations left broken references: {broken[:5]}"
                            )
            finally:
                if sqlite:
                    _foreign_keys(connection, on=True)
    finally:
        engine.dispose()


def _foreign_keys(connection: Connection, *, on: bool) -> None:
    """Set SQLite's foreign_keys pragma on the connection's own driver
    connection, outside any transaction (SQLAlchemy would begin one)."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")

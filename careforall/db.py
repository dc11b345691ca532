"""Engine, sessions and migrations.

SQLite runs in WAL mode with `synchronous=FULL` (an acknowledged commit
survives a power cut), foreign keys on and a busy timeout. Write transactions
start with `BEGIN IMMEDIATE`, so two writers queue on the lock instead of one
failing when it upgrades a read to a write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlmodel import Session

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
        conn.exec_driver_sql("BEGIN")
        return
    waiters: WriteWaiters | None = options.get(_WAITERS)
    if waiters is None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    with waiters.waiting():
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(settings: Settings) -> Engine:
    if settings.is_sqlite:
        engine = create_engine(
            settings.database_url,
            connect_args={
                "check_same_thread": False,
                "timeout": settings.busy_timeout_ms / 1000,
            },
        )
        event.listen(engine, "connect", _sqlite_pragmas(settings.busy_timeout_ms))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(settings.database_url, pool_pre_ping=True)


class Database:
    """The engine plus the two ways in: read sessions and write transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.write_waiters = WriteWaiters()
        self._write_engine = engine.execution_options(
            **{_IMMEDIATE: True, _WAITERS: self.write_waiters}
        )
        self._commit_listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every commit that wrote outbox events."""
        with self._lock:
            self._commit_listeners.append(listener)

    def notify_commit(self) -> None:
        for listener in list(self._commit_listeners):
            listener()

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
        self.engine.dispose()


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

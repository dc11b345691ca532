"""Backups and restores of the SQLite database file.

`backup` copies the live database with SQLite's online backup API in one step:
one read snapshot, so the copy holds exactly the transactions committed before
it began, while the server keeps writing (WAL readers never block writers).

`restore` puts a backup in place of the database, atomically (a rename), and
refuses while anything uses the database. Two checks, because either alone
has a gap: every server holds a shared `flock` on `<database>.lock` for its
whole life (the kernel drops it when the process dies, even by SIGKILL, so it
never goes stale), and SQLite itself must grant an exclusive lock, which it
refuses while any other connection has the file open.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from careforall.db import alembic_config
from careforall.settings import Settings

log = logging.getLogger("careforall.backup")

LOCK_SUFFIX = ".lock"
# Held exclusively by `careforall serve` for its life: one server per file.
SERVING_SUFFIX = ".serving"


class BackupError(Exception):
    """Why a backup or restore was refused or failed; safe to print."""


@dataclass(frozen=True)
class DatabaseInfo:
    revision: str  # the Alembic schema version
    pledges: int
    size: int  # bytes


def sqlite_path(settings: Settings) -> Path:
    """The database file, or a BackupError saying what to use instead."""
    url = make_url(settings.database_url)
    if not url.get_backend_name() == "sqlite":
        raise BackupError(
            f"the database is {url.get_backend_name()}, not an SQLite file: back it "
            "up with its own tools (for PostgreSQL, pg_dump and pg_restore)"
        )
    name = url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        raise BackupError(f"{settings.database_url} is not an SQLite file path")
    return Path(name)


def require_database(settings: Settings) -> None:
    """Refuse to work on an SQLite file that is not there (instead of making one)."""
    if settings.is_sqlite:
        path = sqlite_path(settings)
        if not path.is_file():
            raise BackupError(f"there is no database at {path}")


# --- the server's lock ---------------------------------------------------------


def _lock_file(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + LOCK_SUFFIX)


class ServerLock:
    """A shared lock on `<database>.lock`, held while a server runs."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def hold_server_lock(settings: Settings) -> ServerLock | None:
    """Take the server's shared lock; None when the database is not an SQLite file.

    Several servers may share a database; only a restore takes the lock
    exclusively, and a server starting during one waits for it to finish.
    """
    try:
        path = sqlite_path(settings)
    except BackupError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_file(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        log.warning("waiting for a restore to finish", extra={"database": str(path)})
        fcntl.flock(fd, fcntl.LOCK_SH)
    return ServerLock(fd)


def hold_serving_lock(settings: Settings) -> ServerLock | None:
    """Claim the SQLite database for this `careforall serve`, or refuse.

    One server process per database file: its processes see each other's
    commits only through a poll, guests' signed-out sessions are remembered
    by the one process, and kept mails would be sent by both. The kernel drops
    the lock when the process dies, even by SIGKILL, so it never goes stale.
    None when the database is not an SQLite file.
    """
    try:
        path = sqlite_path(settings)
    except BackupError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + SERVING_SUFFIX)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BackupError(
            f"another CareForAll server is using {path}; one server may serve an "
            "SQLite database (use PostgreSQL for several)"
        ) from None
    return ServerLock(fd)


@contextmanager
def _no_server(path: Path) -> Iterator[None]:
    """Hold the lock exclusively, or refuse: a server is using the database."""
    fd = os.open(_lock_file(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"a CareForAll server is using {path}; stop it, then restore"
            ) from None
        if path.exists():
            _check_unused(path)
        yield
    finally:
        os.close(fd)


def _check_unused(path: Path) -> None:
    """SQLite grants an exclusive lock only when no other connection has the file
    open (the server's database is in WAL mode, where an idle connection counts)."""
    conn = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        raise BackupError(
            f"another program has {path} open; close it, then restore"
        ) from None
    except sqlite3.DatabaseError:
        pass  # not a database at all: nothing can be using it as one
    finally:
        conn.close()


# --- checks --------------------------------------------------------------------


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {s.revision for s in script.walk_revisions()}


def inspect_database(path: Path, *, name: Path | None = None) -> DatabaseInfo:
    """Check that `path` is a whole CareForAll database this version can serve.

    `name` is what messages call the file (the original of a checked copy).
    """
    shown = name or path
    if not path.is_file():
        raise BackupError(f"there is no file at {path}")
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise BackupError(
                    f"{shown} fails SQLite's integrity check: {problems[0]}"
                )
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                pledges = conn.execute("SELECT count(*) FROM pledges").fetchone()[0]
            except sqlite3.OperationalError:
                raise BackupError(
                    f"{shown} is an SQLite file but not a CareForAll database"
                ) from None
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{shown} is not an SQLite database ({exc})") from None
    if row is None or row[0] not in _known_revisions():
        version = row[0] if row else "none"
        raise BackupError(
            f"{shown} has schema version {version}, which this CareForAll does not "
            "know (was it made by a newer version?)"
        )
    return DatabaseInfo(
        revision=str(row[0]), pledges=int(pledges), size=path.stat().st_size
    )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


# --- backup and restore --------------------------------------------------------


@dataclass(frozen=True)
class Result:
    source: Path
    target: Path
    info: DatabaseInfo
    seconds: float


def backup(settings: Settings, dest: Path, *, force: bool = False) -> Result:
    """Copy the live database to `dest` (a new file unless `force`)."""
    started = time.monotonic()
    source = sqlite_path(settings)
    require_database(settings)
    if dest.exists():
        if dest.is_dir() or not force:
            raise BackupError(f"{dest} already exists; pass --force to replace it")
        if dest.samefile(source):
            raise BackupError("the backup cannot replace the database itself")
    staging = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        with (
            closing(
                sqlite3.connect(source, timeout=settings.busy_timeout_ms / 1000)
            ) as src,
            closing(sqlite3.connect(staging, isolation_level=None)) as dst,
        ):
            src.backup(dst, pages=-1)  # one step: one consistent snapshot
            # A plain rollback-journal file: the backup is this one file.
            dst.execute("PRAGMA journal_mode=DELETE")
        info = inspect_database(staging)
        _fsync(staging)
        os.replace(staging, dest)
        _fsync(dest.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"the backup failed: {exc}") from None
    finally:
        staging.unlink(missing_ok=True)
        _remove_sidecars(staging)
    return Result(source, dest, info, time.monotonic() - started)


def restore(settings: Settings, backup_file: Path) -> Result:
    """Replace the database with `backup_file`, unless something uses it."""
    started = time.monotonic()
    target = sqlite_path(settings)
    if not backup_file.is_file():
        raise BackupError(f"there is no file at {backup_file}")
    if target.exists() and target.samefile(backup_file):
        raise BackupError(f"{backup_file} is the database itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Checked as a copy beside the database, so the rename below is atomic and
    # what goes in place is exactly what was checked.
    staging = target.with_name(f".{target.name}.{os.getpid()}.restoring")
    try:
        shutil.copyfile(backup_file, staging)
        info = inspect_database(staging, name=backup_file)
        _fsync(staging)
        with _no_server(target):
            # The old write-ahead log must not be replayed onto the new file.
            _remove_sidecars(target)
            os.replace(staging, target)
            _fsync(target.parent)
    finally:
        staging.unlink(missing_ok=True)
        _remove_sidecars(staging)
    return Result(backup_file, target, info, time.monotonic() - started)

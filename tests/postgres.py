"""A PostgreSQL server for the tests: the one CAREFORALL_TEST_POSTGRES_URL
names, or a throwaway cluster started from the installed server binaries.

Each test gets a database of its own, cloned from a migrated template.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from careforall.db import run_migrations
from careforall.settings import Settings

TEMPLATE = "careforall_template"
_counter = itertools.count(1)


def _bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    candidates = []
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    """A running server: `url` reaches its `postgres` database as a superuser."""

    url: str
    stop: object = None  # a callable, for a cluster started here

    def shutdown(self) -> None:
        if callable(self.stop):
            self.stop()


def start_cluster(*, durable: bool = False) -> Cluster | None:
    """Start a throwaway cluster on 127.0.0.1 (None if no server is installed).

    The tests' cluster does not wait for the disk (fsync and synchronous
    commits off); a `durable` one does, as a deployment's (the benchmark).
    initdb refuses to run as root, so as root it runs as the `postgres` user.
    """
    bindir = _bindir()
    if bindir is None:
        return None
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            return None
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="careforall-pg-"))
    data = root / "data"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
        "-c max_connections=300"
    )
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "server.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)

    return Cluster(url=f"postgresql://postgres@127.0.0.1:{port}/postgres", stop=stop)


def database_url(server_url: str, name: str) -> str:
    base, _, _ = server_url.rpartition("/")
    return f"postgresql+psycopg://{base.partition('://')[2]}/{name}"


def _admin(server_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server_url, autocommit=True)


def make_template(server_url: str) -> None:
    """A database at the newest migration, for tests to clone."""
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(TEMPLATE)
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    run_migrations(Settings(database_url=database_url(server_url, TEMPLATE)))


def create_database(server_url: str, *, template: str | None = TEMPLATE) -> str:
    """A new database (a clone of the template); returns its SQLAlchemy URL."""
    name = f"careforall_test_{os.getpid()}_{next(_counter)}"
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
    with _admin(server_url) as conn:
        for attempt in range(50):
            try:
                conn.execute(query)
                break
            except psycopg.errors.ObjectInUse:
                # Someone is still connected to the template: try again.
                if attempt == 49:
                    raise
                time.sleep(0.05)
    return database_url(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = url.rpartition("/")[2]
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _shape(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[object, ...]:
    """The schema version and the tables: what emptying a database keeps."""
    version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    tables = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    ).fetchall()
    return (tuple(version), tuple(tables))


class DatabasePool:
    """Databases for one test each, emptied and reused: cloning the template
    takes a quarter of a second, emptying a used database a fiftieth."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._free: list[str] = []
        self._shape: tuple[object, ...] | None = None

    def acquire(self) -> str:
        if self._free:
            return self._free.pop()
        url = create_database(self.server_url)
        if self._shape is None:
            with psycopg.connect(_libpq(url)) as conn:
                self._shape = _shape(conn)
        return url

    def release(self, url: str) -> None:
        """Empty the database for the next test (or drop it, if the test
        changed its schema)."""
        name = url.rpartition("/")[2]
        with _admin(self.server_url) as admin:
            # Connections a test left behind would block TRUNCATE.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            if _shape(conn) != self._shape:
                reusable = False
            else:
                tables = [
                    row[0]
                    for row in conn.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                        " AND tablename <> 'alembic_version'"
                    )
                ]
                conn.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                        sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                    )
                )
                reusable = True
        if reusable:
            self._free.append(url)
        else:
            drop_database(self.server_url, url)

    def close(self) -> None:
        for url in self._free:
            drop_database(self.server_url, url)
        self._free.clear()

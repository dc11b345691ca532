"""The databases the benchmark serves: a SQLite file, or a database on a
throwaway PostgreSQL cluster of the benchmark's own (tests/postgres.py, on
127.0.0.1, never a system-wide server).

A `Database` is a SQLite file's `Path` or a `Postgres` database. The seed
(seed.py) and the checks that read a database beside its running server
write one SQL text for both: `?` placeholders, turned into psycopg's `%s`
on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.server import clean_env

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("sqlite", "postgresql")
# The phases that run on PostgreSQL; the others say so and are skipped.
ON_POSTGRESQL = ("floors", "main", "workers", "stampede")
# PostgreSQL's scenarios are recorded under this prefix (`pg_create_pledge`),
# beside SQLite's, so one run's tables can hold both.
PREFIX = "pg_"


@dataclass(frozen=True)
class Postgres:
    """A database on a PostgreSQL server; `url` is SQLAlchemy's
    (`postgresql+psycopg://...`), as CAREFORALL_DATABASE_URL takes it."""

    url: str

    @property
    def libpq(self) -> str:
        return self.url.replace("postgresql+psycopg://", "postgresql://", 1)


Database = Path | Postgres


def url_of(db: Database) -> str:
    """The database's CAREFORALL_DATABASE_URL."""
    return db.url if isinstance(db, Postgres) else f"sqlite:///{db}"


def from_url(url: str) -> Database:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if url.startswith("postgresql"):
        return Postgres(url.replace("postgresql://", "postgresql+psycopg://", 1))
    raise ValueError(f"not a SQLite or PostgreSQL URL: {url}")


def pg_sql(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def query(db: Database, sql: str, params: Sequence[object] = ()) -> list[Any]:
    """Read the database beside its running server (SQLite: WAL allows it)."""
    if isinstance(db, Postgres):
        import psycopg

        with psycopg.connect(db.libpq, autocommit=True) as conn:
            return conn.execute(pg_sql(sql), tuple(params)).fetchall()
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
        return c.execute(sql, tuple(params)).fetchall()


class Writer:
    """One transaction that writes seed rows: the same SQL on both databases,
    many rows at once (SQLite: executemany; PostgreSQL: COPY)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.postgres = isinstance(db, Postgres)
        self._conn: Any = None

    def __enter__(self) -> Writer:
        if isinstance(self.db, Postgres):
            import psycopg

            self._conn = psycopg.connect(self.db.libpq)
        else:
            self._conn = sqlite3.connect(self.db, isolation_level=None)
            self._conn.execute("PRAGMA synchronous=OFF")
            self._conn.execute("PRAGMA cache_size=-262144")  # 256 MiB for indexes
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("BEGIN")
        return self

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        if self.postgres:
            self._conn.execute(pg_sql(sql), tuple(params))
        else:
            self._conn.execute(sql, tuple(params))

    def insert(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]
    ) -> None:
        names = ", ".join(columns)
        if self.postgres:
            with (
                self._conn.cursor() as cursor,
                cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" * len(columns))
        self._conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if self.postgres:
                if kind is None:
                    self._conn.commit()
                    # Fresh statistics for the planner, as after a restore.
                    self._conn.autocommit = True
                    self._conn.execute("ANALYZE")
            elif kind is None:
                self._conn.execute("COMMIT")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()


def migrate(db: Database) -> None:
    """Create the schema with the project's own migrations (`careforall migrate`)."""
    subprocess.run(
        [sys.executable, "-m", "careforall", "migrate"],
        cwd=ROOT,
        env=clean_env(
            CAREFORALL_DATABASE_URL=url_of(db), CAREFORALL_LOG_LEVEL="WARNING"
        ),
        check=True,
        capture_output=True,
    )


@dataclass
class Backend:
    """Where each phase's fresh database is made: SQLite files in the phase's
    folder, or databases on one PostgreSQL cluster started for the run (the
    first migrated with `careforall migrate`, the next cloned from it)."""

    name: str = "sqlite"
    server_url: str | None = None
    _template: str | None = None
    _stop: list[Any] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return PREFIX if self.name == "postgresql" else ""

    def start(self) -> None:
        if self.name != "postgresql" or self.server_url is not None:
            return
        from tests import postgres

        cluster = postgres.start_cluster(durable=True)
        if cluster is None:
            raise RuntimeError(
                "PostgreSQL is not installed (apt-get install postgresql)"
            )
        self.server_url = cluster.url
        self._stop.append(cluster.shutdown)

    def empty(self) -> Postgres:
        """A new database with no schema, on the run's PostgreSQL cluster."""
        from tests import postgres

        self.start()
        assert self.server_url is not None
        return Postgres(postgres.create_database(self.server_url, template=None))

    def fresh(self, workdir: Path) -> Database:
        """A new, migrated, empty database."""
        if self.name != "postgresql":
            path = workdir / "careforall.db"
            migrate(path)
            return path
        from tests import postgres

        self.start()
        assert self.server_url is not None
        if self._template is None:
            db = self.empty()
            migrate(db)
            self._template = db.url.rpartition("/")[2]
        return Postgres(
            postgres.create_database(self.server_url, template=self._template)
        )

    def close(self) -> None:
        for stop in self._stop:
            stop()
        self._stop.clear()


def server_version() -> str | None:
    """The installed PostgreSQL server's version (`postgres --version`)."""
    from tests import postgres

    bindir = postgres._bindir()
    if bindir is None:
        return None
    done = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True
    )
    return done.stdout.strip() or None

"""A real `careforall serve` process on 127.0.0.1, for tests that need sockets,
crashes and restarts. Its output goes to a file that is printed when a test fails."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, GQL

READY_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One database served by a `careforall serve` child process: a SQLite
    file (`db_path`) or a PostgreSQL database (`database_url`).

    `restart()` serves the same database on the same port, so clients keep
    their URL.
    """

    def __init__(
        self,
        workdir: Path,
        db_path: Path | None = None,
        *,
        database_url: str | None = None,
        serve_args: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        self.workdir = workdir
        self.serve_args = serve_args
        if database_url is None:
            assert db_path is not None, "a SQLite file or a database URL"
            database_url = f"sqlite:///{db_path}"
        self.database_url = database_url
        self._db_path = db_path
        self.port = free_port()
        self.log_path = workdir / "server.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREFORALL_")}
        env |= {
            "CAREFORALL_DATABASE_URL": self.database_url,
            "CAREFORALL_RATE_LIMITS": "off",
            "CAREFORALL_ADMIN_EMAIL": ADMIN_EMAIL,
            "CAREFORALL_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "CAREFORALL_LOG_LEVEL": "WARNING",
            "CAREFORALL_OUTBOX_BASE_DELAY": "0.05",
            "PYTHONUNBUFFERED": "1",
        }
        return env | self.env

    def start(self, timeout: float = READY_TIMEOUT) -> float:
        """Start the process and wait for /readyz; returns the seconds it took."""
        assert self.process is None, "already running"
        self.starts += 1
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts} on port {self.port} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "careforall",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    *self.serve_args,
                ],
                cwd=self.workdir,
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready(began + timeout)
        return time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        with httpx.Client(base_url=self.base_url, timeout=1.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    self.process = None
                    raise AssertionError(
                        f"server exited with {code} before it was ready"
                    )
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("server was not ready in time")
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int:
        """Graceful stop (SIGTERM); SIGKILL if it hangs. Returns the exit code."""
        process, self.process = self.process, None
        if process is None:
            return 0
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"server ignored SIGTERM for {timeout}s") from None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a power cut for the process."""
        process, self.process = self.process, None
        assert process is not None, "the server is not running"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def restart(self, timeout: float = READY_TIMEOUT) -> float:
        if self.process is not None:
            self.stop()
        return self.start(timeout)

    def log_text(self) -> str:
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )

    def logged_errors(self) -> list[str]:
        """Lines logged at error or worse (an unexpected exception, a dead letter)."""
        return [
            line
            for line in self.log_text().splitlines()
            if '"level": "error"' in line or '"level": "critical"' in line
        ]

    @property
    def db_path(self) -> Path:
        assert self._db_path is not None, "this server runs on PostgreSQL"
        return self._db_path

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the database directly, beside the server (`?` placeholders)."""
        if self.is_postgres:
            url = self.database_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(url) as conn:
                return conn.execute(sql.replace("?", "%s"), params).fetchall()
        with closing(
            sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        ) as conn:
            return conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.query(sql, params)[0][0]

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `careforall ARGS` in a process of its own on this server's
        database, as an operator would beside it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREFORALL_")}
        env |= {
            "CAREFORALL_DATABASE_URL": self.database_url,
            "CAREFORALL_LOG_LEVEL": "WARNING",
        }
        return subprocess.run(
            [sys.executable, "-m", "careforall", *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def events(self, name: str, pledge_id: str) -> list[dict[str, Any]]:
        """The outbox events called `name` about one pledge, oldest first."""
        rows = self.query(
            "SELECT payload FROM outbox_events WHERE name = ? ORDER BY id", (name,)
        )
        payloads = [json.loads(payload) for (payload,) in rows]
        return [p for p in payloads if p.get("pledge_id") == pledge_id]

    def settled(self) -> bool:
        """The provider owes no webhook and no outbox event waits to be processed."""
        owed = self.scalar(
            "SELECT count(*) FROM sim_webhooks WHERE delivered_at IS NULL"
        )
        pending = self.scalar(
            "SELECT count(*) FROM outbox_events WHERE status = 'pending'"
        )
        return owed == 0 and pending == 0


class ServerGQL(GQL):
    """The `GQL` helper over a real socket (httpx.Client has TestClient's `post`)."""

    def __init__(self, client: httpx.Client) -> None:  # noqa: D107
        self.client = client  # type: ignore[assignment]


@pytest.fixture
def make_server(
    tmp_path: Path, template_db: Path, database_kind: str, db_url: str
) -> Iterator[Callable[..., Server]]:
    """Make (and start) a server on a fresh copy of the migrated template database.

    On PostgreSQL every server of a test shares the test's database (several
    processes, one database); on SQLite each gets a file of its own unless
    `share_with` names a server whose file it serves too.
    """
    servers: list[Server] = []

    def make(
        *, start: bool = True, share_with: Server | None = None, **env: str
    ) -> Server:
        workdir = tmp_path / f"server{len(servers)}"
        workdir.mkdir()
        if share_with is not None:
            server = Server(
                workdir,
                share_with._db_path,
                database_url=share_with.database_url,
                **env,
            )
        elif database_kind == "postgresql":
            server = Server(workdir, database_url=db_url, **env)
        else:
            db_path = workdir / "careforall.db"
            shutil.copy(template_db, db_path)
            server = Server(workdir, db_path, **env)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        try:
            server.stop()
        finally:
            # Captured output is shown only when the test fails.
            print(f"===== {server.log_path} =====\n{server.log_text()}")


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
        yield client


@pytest.fixture
def api(http: httpx.Client) -> ServerGQL:
    return ServerGQL(http)

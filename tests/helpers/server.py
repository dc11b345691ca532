"""Servers in processes of their own on 127.0.0.1: `ServerProcess` starts any
HTTP server on a free port, with its output in a log file, and waits until it
answers; `Server` is `careforall serve` on a test's database, which the tests
(and, through `serve_command`, the benchmark) use."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.helpers.outbox import OWED_WEBHOOKS, PENDING_EVENTS
from tests.helpers.waiting import wait_until

HOST = "127.0.0.1"
# A start takes seconds; on a machine busy with other work it has taken over
# 20 s. A server that cannot start still fails, only later.
READY_TIMEOUT = 60.0
# A JSON log line at error or worse, however the encoder spaces it.
ERROR_LINE = re.compile(r'"level": ?"(?:error|critical)"')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without its CAREFORALL_ settings, unbuffered,
    with `extra` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREFORALL_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def serve_command(port: int, *args: str) -> list[str]:
    """`python -m careforall serve` on 127.0.0.1:`port`."""
    return [
        sys.executable,
        "-m",
        "careforall",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        *args,
    ]


class ServerProcess:
    """A child serving HTTP on 127.0.0.1:`port`, running `argv` in `cwd` (by
    default `workdir`) with the environment `env` (on top of `clean_env()`;
    changes before a start count). Its output goes to `workdir/NAME.log`.

    `start` waits until `ready_path` answers 200; `stop` ends it with SIGTERM
    and fails when it is still running `timeout` seconds later, unless
    `kill_when_hung` (then it is killed and its exit code returned).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        workdir: Path,
        *,
        port: int,
        ready_path: str = "/readyz",
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.workdir = workdir
        self.port = port
        self.ready_path = ready_path
        self.cwd = cwd or workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.ready_seconds = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/graphql"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self, timeout: float = READY_TIMEOUT) -> float:
        """Start the process and wait until it is ready; returns the seconds
        that took. A process that exits first, or is not ready in `timeout`
        seconds, fails the start (and is stopped)."""
        assert self.process is None, f"{self.name} is already running"
        self.starts += 1
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts} on port {self.port} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=clean_env(**self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            try:
                wait_until(
                    lambda: self._ready(client),
                    timeout=timeout,
                    interval=0.05,
                    what=f"{self.name} to answer {self.ready_path} with 200",
                )
            except AssertionError:
                self.stop(kill_when_hung=True)
                raise
        self.ready_seconds = time.monotonic() - began
        return self.ready_seconds

    def _ready(self, client: httpx.Client) -> bool:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            self.process = None
            raise AssertionError(
                f"{self.name} exited with {code} before it was ready:\n"
                + self.log_tail()
            )
        try:
            return client.get(self.ready_path).status_code == 200
        except httpx.TransportError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0, *, kill_when_hung: bool = False) -> int:
        """Graceful stop (SIGTERM); returns the exit code (0 if not running)."""
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
            if kill_when_hung:
                return code
            raise AssertionError(
                f"{self.name} ignored SIGTERM for {timeout}s"
            ) from None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a power cut for the process."""
        process, self.process = self.process, None
        assert process is not None, f"{self.name} is not running"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def restart(self, timeout: float = READY_TIMEOUT) -> float:
        if self.process is not None:
            self.stop()
        return self.start(timeout)

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def logged_errors(self) -> list[str]:
        """Lines logged at error or worse (an unexpected exception, a dead
        letter), read line by line (a log at INFO can be large)."""
        if not self.log_path.exists():
            return []
        with self.log_path.open(errors="replace") as lines:
            return [line.rstrip("\n") for line in lines if ERROR_LINE.search(line)]


class Server(ServerProcess):
    """One database served by `careforall serve`: a SQLite file (`db_path`) or
    a PostgreSQL database (`database_url`), with rate limits off, the test
    admin account and quick outbox retries; `env` changes any setting.

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
        if database_url is None:
            assert db_path is not None, "a SQLite file or a database URL"
            database_url = f"sqlite:///{db_path}"
        port = free_port()
        settings = {
            "CAREFORALL_DATABASE_URL": database_url,
            "CAREFORALL_RATE_LIMITS": "off",
            "CAREFORALL_CAMPAIGN_REVIEW": "off",
            "CAREFORALL_ADMIN_EMAIL": ADMIN_EMAIL,
            "CAREFORALL_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "CAREFORALL_LOG_LEVEL": "WARNING",
            "CAREFORALL_OUTBOX_BASE_DELAY": "0.05",
        }
        super().__init__(
            "server",
            serve_command(port, *serve_args),
            settings | env,
            workdir,
            port=port,
        )
        self.database_url = database_url
        self._db_path = db_path

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
        return subprocess.run(
            [sys.executable, "-m", "careforall", *args],
            cwd=self.workdir,
            env=clean_env(
                CAREFORALL_DATABASE_URL=self.database_url,
                CAREFORALL_LOG_LEVEL="WARNING",
            ),
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
        """No outbox event waits and the provider owes no webhook (as
        `tests.helpers.outbox.settled`, read beside the server)."""
        return bool(
            self.scalar(PENDING_EVENTS) == 0 and self.scalar(OWED_WEBHOOKS) == 0
        )

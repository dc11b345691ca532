"""Server processes for the benchmark: `careforall serve` and the floor app.

Each runs in its own process on 127.0.0.1, started through `launch` (which
raises its open-files limit), with its output in a log file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
NOFILE = 65_536


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_status_kib(pid: int, field: str) -> int | None:
    """A `/proc/PID/status` size field (VmRSS, VmHWM) in KiB, if readable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREFORALL_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Process:
    """A child serving HTTP; `start` waits until `ready_path` answers 200."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], workdir: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_seconds = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self, ready_path: str, timeout: float) -> float:
        command = [
            sys.executable,
            "-m",
            "tests.bench.launch",
            str(NOFILE),
            *[arg.replace("{port}", str(self.port)) for arg in self.argv],
        ]
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = began + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    self.process = None
                    raise RuntimeError(
                        f"{self.name} exited with {code} before it was ready:\n"
                        + self.log_tail()
                    )
                try:
                    if client.get(ready_path).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name} was not ready in {timeout:.0f}s")
                time.sleep(0.05)
        self.ready_seconds = time.monotonic() - began
        return self.ready_seconds

    def rss_mb(self) -> float:
        """Resident memory now (VmRSS), in MB (10^6 bytes); 0 if unreadable."""
        kib = proc_status_kib(self.pid, "VmRSS")
        return 0.0 if kib is None else round(kib * 1024 / 1e6, 1)

    def peak_rss_mb(self) -> float:
        """The most resident memory the process has had (VmHWM), in MB."""
        kib = proc_status_kib(self.pid, "VmHWM")
        return 0.0 if kib is None else round(kib * 1024 / 1e6, 1)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(
            self.log_path.read_text(errors="replace").splitlines()[-lines:]
        )

    def logged_errors(self) -> list[str]:
        if not self.log_path.exists():
            return []
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if '"level": "error"' in line or '"level": "critical"' in line
        ]


def careforall_server(
    workdir: Path, db_path: Path, *, webhook_secret: str, name: str = "server"
) -> Process:
    env = clean_env(
        CAREFORALL_DATABASE_URL=f"sqlite:///{db_path}",
        CAREFORALL_RATE_LIMITS="off",
        CAREFORALL_LOG_LEVEL="WARNING",
        CAREFORALL_WEBHOOK_SECRET=webhook_secret,
    )
    argv = [
        sys.executable,
        "-m",
        "careforall",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    return Process(name, argv, env, workdir)


def floor_server(workdir: Path, db_path: Path) -> Process:
    argv = [
        sys.executable,
        "-m",
        "tests.bench.floor",
        "--db",
        str(db_path),
        "--port",
        "{port}",
    ]
    return Process("floor", argv, clean_env(), workdir)


def migrate(db_path: Path) -> None:
    """Create the schema with the project's own migrations."""
    subprocess.run(
        [sys.executable, "-m", "careforall", "migrate"],
        cwd=ROOT,
        env=clean_env(
            CAREFORALL_DATABASE_URL=f"sqlite:///{db_path}",
            CAREFORALL_LOG_LEVEL="WARNING",
        ),
        check=True,
        capture_output=True,
    )

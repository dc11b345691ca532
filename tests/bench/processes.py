"""Server processes for the benchmark: `careforall serve` and the floor app.

Each is a `ServerProcess` (tests/helpers/server.py) started through `launch`
(which raises its open-files limit), in the repository root, with its output
(JSON log lines at INFO, as shipped) written straight to a log file, as a
deployment's journald or container runtime takes it: no pipe that could
fill up and block the server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.bench import databases
from tests.bench.databases import Database, url_of
from tests.helpers.server import ServerProcess, free_port, serve_command

ROOT = Path(__file__).resolve().parents[2]
NOFILE = 65_536


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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far, all its threads;
    0 if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # utime and stime, the 14th and 15th fields (the 12th and 13th after the name).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Process(ServerProcess):
    """A benchmarked server: its memory is read from /proc, and one that hangs
    on SIGTERM is killed rather than failing the run."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        workdir: Path,
        *,
        port: int,
        ready_path: str,
    ) -> None:
        launch = [sys.executable, "-m", "tests.bench.launch", str(NOFILE)]
        super().__init__(
            name,
            launch + argv,
            env,
            workdir,
            port=port,
            ready_path=ready_path,
            cwd=ROOT,
        )

    def stop(self, timeout: float = 15.0, *, kill_when_hung: bool = True) -> int:
        return super().stop(timeout, kill_when_hung=kill_when_hung)

    def rss_mb(self) -> float:
        """Resident memory now (VmRSS), in MB (10^6 bytes); 0 if unreadable."""
        kib = proc_status_kib(self.pid, "VmRSS")
        return 0.0 if kib is None else round(kib * 1024 / 1e6, 1)

    def peak_rss_mb(self) -> float:
        """The most resident memory the process has had (VmHWM), in MB."""
        kib = proc_status_kib(self.pid, "VmHWM")
        return 0.0 if kib is None else round(kib * 1024 / 1e6, 1)


def careforall_server(
    workdir: Path,
    db: Database,
    *,
    webhook_secret: str,
    name: str = "server",
    workers: int = 1,
) -> Process:
    # The shipped defaults (logs at INFO included), but for two: the load
    # comes from one address, which the rate limits would refuse after a few
    # dozen pledges a minute, and campaigns are seeded open, not reviewed.
    env = {
        "CAREFORALL_DATABASE_URL": url_of(db),
        "CAREFORALL_RATE_LIMITS": "off",
        "CAREFORALL_CAMPAIGN_REVIEW": "off",
        "CAREFORALL_WEBHOOK_SECRET": webhook_secret,
    }
    port = free_port()
    argv = serve_command(port, "--workers", str(workers))
    return Process(name, argv, env, workdir, port=port, ready_path="/readyz")


def floor_server(workdir: Path, db: Database, *, workers: int = 1) -> Process:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "tests.bench.floor",
        "--db",
        str(db) if isinstance(db, Path) else db.libpq,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    name = "floor" if workers == 1 else f"floor{workers}"
    return Process(name, argv, {}, workdir, port=port, ready_path="/ready")


def migrate(db: Database) -> None:
    """Create the schema with the project's own migrations."""
    databases.migrate(db)

"""The processes of one `careforall serve --workers N`: an HTTP connection
kept open to each of them (each new connection lands on whichever process
accepts it; /healthz says which one answered), and their metrics."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from tests.helpers.server import Server

# Each worker starts afresh (spawned): on a busy machine that takes a while.
WORKERS_READY_TIMEOUT = 90.0


def start_workers(
    make_server: Callable[..., Server], workers: int = 2, **env: str
) -> Server:
    """`careforall serve --workers N` on the test's database, started."""
    server = make_server(start=False, serve_args=("--workers", str(workers)), **env)
    server.start(timeout=WORKERS_READY_TIMEOUT)
    return server


def serve_processes(
    make_server: Callable[..., Server], database_kind: str, processes: int, **env: str
) -> list[Server]:
    """`processes` server processes on one database: on PostgreSQL that many
    servers (as behind a load balancer); on SQLite, where one server serves a
    file, one server with that many workers (connections land on either)."""
    if database_kind == "postgresql" or processes == 1:
        return [make_server(**env) for _ in range(processes)]
    return [start_workers(make_server, processes, **env)]


@dataclass
class Worker:
    """A keep-alive connection to one process (its `pid`)."""

    pid: int
    http: httpx.Client

    def check(self) -> None:
        """Fail if the connection was closed and the next landed elsewhere."""
        assert self.http.get("/healthz").json()["pid"] == self.pid, "moved"

    def metric(self, name: str, labels: str = "") -> float:
        return metric_of(self.http, name, labels)


def metric_of(http: httpx.Client, name: str, labels: str = "") -> float:
    """The sum of a metric's samples whose labels contain `labels`, as the
    process behind `http` counts it."""
    text = http.get("/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
        if match and labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


@contextmanager
def each_worker(
    server: Server, count: int = 2, tries: int = 200
) -> Iterator[list[Worker]]:
    """One connection to each of the server's `count` processes, found by
    opening connections until that many processes have answered."""
    found: dict[int, Worker] = {}
    spare: list[httpx.Client] = []
    try:
        for _ in range(tries):
            http = httpx.Client(base_url=server.base_url, timeout=30)
            pid = int(http.get("/healthz").json()["pid"])
            if pid in found:
                spare.append(http)
                continue
            found[pid] = Worker(pid, http)
            if len(found) == count:
                break
        for http in spare:
            http.close()
        assert len(found) == count, f"only processes {sorted(found)} answered"
        yield list(found.values())
    finally:
        for worker in found.values():
            worker.http.close()

"""A burst of sign-ins against a real server: 100 logins at once, each for an
unknown email (each verifies a password hash all the same), sent from one
address with the rate limits off, as a botnet behind many addresses would.

Argon2's memory is what a hash costs; the server must bound how many run at
once, so its memory grows by less than 150 MB, and it must keep answering:
/healthz, asked every 20 ms meanwhile, under 50 ms. Every login is answered
UNAUTHENTICATED, or RATE_LIMITED with a retry hint when too many wait for a
hash. `pytest -s` prints the figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests import factories as f
from tests.helpers.server import Server

pytestmark = [pytest.mark.server, pytest.mark.sqlite_only]  # no database at stake

LOGINS = 100
MAX_GROWTH_MB = 150
MAX_HEALTHZ_MS = 50


def rss_mb(pid: int) -> float:
    """The process's resident memory, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


# Run in a process of its own, so the 100 client threads of the test do not
# slow its requests down: asks /healthz every 20 ms and samples the server's
# memory until the file `stop` exists, then prints what it saw as JSON.
WATCHER = """
import json, sys, time, pathlib, httpx
url, pid, stop = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
def rss():
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
latencies, peak = [], rss()
with httpx.Client(base_url=url, timeout=30.0) as client:
    print("ready", flush=True)
    while not stop.exists():
        began = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        latencies.append((time.perf_counter() - began) * 1000)
        peak = max(peak, rss())
        time.sleep(0.02)
print(json.dumps({"latencies_ms": latencies, "peak_mb": peak}), flush=True)
"""


class Watch:
    """The watcher above, for the time of a `with` block."""

    def __init__(self, server: Server, stop: Path) -> None:
        self.stop = stop
        self.process = subprocess.Popen(
            [sys.executable, "-c", WATCHER, server.base_url, str(server.pid)]
            + [str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.latencies_ms: list[float] = []
        self.peak_mb = 0.0

    def __enter__(self) -> Watch:
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.touch()
        out, _ = self.process.communicate(timeout=30)
        seen = json.loads(out.strip().splitlines()[-1])
        self.latencies_ms, self.peak_mb = seen["latencies_ms"], seen["peak_mb"]


def login_outcome(client: httpx.Client, i: int) -> str:
    response = client.post(
        "/graphql",
        json={
            "query": f.LOGIN,
            "variables": {"email": f"nobody{i}@example.org", "password": "guess 1234"},
        },
    )
    assert response.status_code == 200, response.text
    error = response.json()["errors"][0]
    code = str(error["extensions"]["code"])
    if code == "RATE_LIMITED":
        assert error["extensions"]["retryAfterSeconds"] >= 1
    return code


def test_a_burst_of_logins_keeps_memory_and_health_in_bounds(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = make_server()
    limits = httpx.Limits(max_connections=LOGINS, max_keepalive_connections=LOGINS)
    with httpx.Client(base_url=server.base_url, timeout=120.0, limits=limits) as client:
        assert login_outcome(client, -1) == "UNAUTHENTICATED"  # warm: one hash made
        before = rss_mb(server.pid)
        began = time.perf_counter()
        stop = tmp_path / "stop"
        with Watch(server, stop) as watch, ThreadPoolExecutor(LOGINS) as pool:
            outcomes = Counter(
                pool.map(lambda i: login_outcome(client, i), range(LOGINS))
            )
        seconds = time.perf_counter() - began
        after = rss_mb(server.pid)
    latencies = sorted(watch.latencies_ms)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(
        f"\n{LOGINS} concurrent logins (unknown emails) in {seconds:.2f} s: "
        f"{dict(outcomes)}\n"
        f"server RSS: {before:.0f} MB before, peak {watch.peak_mb:.0f} MB "
        f"(+{watch.peak_mb - before:.0f} MB), {after:.0f} MB after\n"
        f"/healthz meanwhile: {len(latencies)} requests, median "
        f"{statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms, "
        f"max {latencies[-1]:.1f} ms"
    )
    assert set(outcomes) <= {"UNAUTHENTICATED", "RATE_LIMITED"}
    assert watch.peak_mb - before < MAX_GROWTH_MB
    assert p95 < MAX_HEALTHZ_MS

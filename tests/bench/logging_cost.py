"""What request logging costs: the same scenarios served at the shipped default
(INFO: a JSON line per request and per created pledge, written to a file as
journald or a container runtime would take them) and with logging off
(WARNING), measured in the same run.

Both servers run side by side, each on a database of its own; their runs
alternate (default, off, then off, default, ...), so the machine's drift
falls on both sides alike. A scenario's ratio is the median of the ratios of
each back-to-back pair.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from tests.bench.client import TOTALS, graphql_body
from tests.bench.databases import Database
from tests.bench.phases import pledge_scripts, serving, static, varied
from tests.bench.processes import Process, cpu_seconds
from tests.bench.report import LOGGING_TARGET
from tests.bench.runner import Bench
from tests.bench.wrk import WrkRun

# Each side of the comparison: its name and its CAREFORALL_LOG_LEVEL (None:
# the shipped default).
SIDES: tuple[tuple[str, str | None], ...] = (("default", None), ("off", "WARNING"))
SCENARIOS = {
    "campaign_totals": "campaignTotals",
    "campaign_totals_uncached": "campaignTotals, every request a cache miss",
    "create_pledge": "createPledge",
}

Script = Callable[[str], Path]

# Back-to-back pairs in a full run. The cost measured is a few percent, and a
# shared machine moves a single run by more than that: the median of five
# pairs moves less than that of three.
PAIRS = 5


def compare(
    bench: Bench,
    name: str,
    servers: dict[str, Process],
    scripts: dict[str, Script],
    after: Callable[[str], object] = lambda side: None,
) -> None:
    """Warm both sides up, then alternating pairs of runs (PAIRS in a full
    run, else `mode.runs`); the medians and the ratio go to
    `logging_<name>`. `after(side)` runs after each of a side's runs (a write
    scenario waits for its outbox there)."""
    mode = bench.mode
    sides = [side for side, _level in SIDES]
    urls = {side: server.base_url + "/graphql" for side, server in servers.items()}
    if mode.warmup > 0:
        for side in sides:
            bench.wrk.run(
                urls[side],
                scripts[side]("warmup"),
                duration=mode.warmup,
                connections=mode.connections,
            )
            after(side)
    runs: dict[str, list[WrkRun]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    pairs = max(mode.runs, PAIRS) if mode.name == "full" else mode.runs
    for i in range(pairs):
        for side in sides if i % 2 == 0 else sides[::-1]:
            script = scripts[side](f"run{i + 1}")
            used = cpu_seconds(servers[side].pid)
            run = bench.wrk.run(
                urls[side], script, duration=mode.duration, connections=mode.connections
            )
            used = cpu_seconds(servers[side].pid) - used
            runs[side].append(run)
            cpu[side].append(used * 1e6 / max(run.requests, 1))
            bench.log(
                f"  logging {name} [{side}] run {i + 1}: {run.rps:,.0f} req/s,"
                f" p99 {run.p99_ms:.2f} ms, server CPU {cpu[side][-1]:.0f} us/request,"
                f" failures {run.failures}"
            )
            after(side)
    record(bench, name, runs, cpu)


def _median_ratio(pairs: list[tuple[float, float]]) -> float | None:
    ratios = [a / b for a, b in pairs if b]
    return statistics.median(ratios) if ratios else None


def record(
    bench: Bench,
    name: str,
    runs: dict[str, list[WrkRun]],
    cpu: dict[str, list[float]],
) -> None:
    default, off = runs["default"], runs["off"]
    ratio = _median_ratio([(d.rps, o.rps) for d, o in zip(default, off, strict=True)])
    # The server's CPU time per request: steadier than throughput on a busy
    # machine (it does not count the time the server waited for a core).
    cpu_ratio = _median_ratio(list(zip(cpu["off"], cpu["default"], strict=True)))
    failures = sum(r.failures for r in default + off)
    bench.record(
        f"logging_{name}",
        kind="logging",
        text=SCENARIOS[name],
        rps_default=round(statistics.median(r.rps for r in default), 1),
        rps_off=round(statistics.median(r.rps for r in off), 1),
        p99_ms_default=round(statistics.median(r.p99_ms for r in default), 3),
        p99_ms_off=round(statistics.median(r.p99_ms for r in off), 3),
        ratio=None if ratio is None else round(ratio, 3),
        cpu_us_default=round(statistics.median(cpu["default"]), 1),
        cpu_us_off=round(statistics.median(cpu["off"]), 1),
        cpu_ratio=None if cpu_ratio is None else round(cpu_ratio, 3),
        failures=failures,
        connections=bench.mode.connections,
    )
    bench.log(
        f"  logging {name}: req/s default / off = {_x(ratio)} (target >= "
        f"{LOGGING_TARGET:.2f}); CPU per request off / default = {_x(cpu_ratio)}"
    )
    if failures:
        sample = next((r.sample for r in default + off if r.sample), "")
        bench.fail(f"logging_{name}", f"{failures} failed requests; {sample[:300]}")


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def logging_phase(bench: Bench) -> None:
    """campaignTotals (cached and not) and createPledge, logs at the default
    against logs off."""
    with ExitStack() as stack:
        servers: dict[str, Process] = {}
        dbs: dict[str, Database] = {}
        campaign: dict[str, str] = {}
        for side, level in SIDES:
            env = {} if level is None else {"CAREFORALL_LOG_LEVEL": level}
            server, seeded, db = stack.enter_context(
                serving(
                    bench, f"logging-{side}", captured=bench.mode.small_pledges, env=env
                )
            )
            servers[side], dbs[side] = server, db
            campaign[side] = seeded.campaign_ids[0]
        compare(
            bench,
            "campaign_totals",
            servers,
            {
                side: static(
                    bench, graphql_body(TOTALS, {"id": campaign[side]}), graphql=True
                )
                for side in servers
            },
        )
        compare(
            bench,
            "campaign_totals_uncached",
            servers,
            {side: varied(bench, TOTALS, {"id": campaign[side]}) for side in servers},
        )
        compare(
            bench,
            "create_pledge",
            servers,
            {
                side: pledge_scripts(bench, server, campaign[side])[0]
                for side, server in servers.items()
            },
            # The outbox's work after a run would slow the other side's next run.
            after=lambda side: bench.settle("logging_create_pledge", dbs[side], 0.5),
        )

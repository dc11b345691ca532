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
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from tests.bench.client import CREATE_PLEDGE, TOTALS, Api, graphql_body
from tests.bench.phases import _static, _varied, serving
from tests.bench.processes import Process
from tests.bench.report import LOGGING_TARGET
from tests.bench.runner import Bench
from tests.bench.wrk import WrkRun, write_data_file

# Each side of the comparison: its name and its CAREFORALL_LOG_LEVEL (None:
# the shipped default).
SIDES: tuple[tuple[str, str | None], ...] = (("default", None), ("off", "WARNING"))
SCENARIOS = {
    "campaign_totals": "campaignTotals",
    "campaign_totals_uncached": "campaignTotals, every request a cache miss",
    "create_pledge": "createPledge",
}

Script = Callable[[str], Path]


def pledge_script(bench: Bench, server: Process, campaign: str, side: str) -> Script:
    """createPledge with a new idempotency key on every request, from a pool
    of anonymous sessions of `server`."""
    with Api(server.base_url) as api:
        tokens = [api.anonymous_token() for _ in range(bench.mode.token_pool)]
    tokens_file = write_data_file(
        bench.workdir / f"logging-tokens-{side}.txt", [[t] for t in tokens]
    )
    pledge = {
        "campaignId": campaign,
        "amountCents": 1000,
        "idempotencyKey": "KEY",
        "donorName": "Bench Donor",
    }
    body_format = (
        graphql_body(CREATE_PLEDGE, {"input": pledge})
        .replace("%", "%%")
        .replace('"KEY"', '"%s"')
    )
    return lambda label: bench.wrk.script(
        "pledge",
        {
            "path": "/graphql",
            "body_format": body_format,
            "data_file": str(tokens_file),
            "run_id": f"log-{side}-{label}-{uuid.uuid4().hex[:8]}",
            "check_graphql": True,
        },
    )


def compare(
    bench: Bench,
    name: str,
    urls: dict[str, str],
    scripts: dict[str, Script],
    after: Callable[[str], object] = lambda side: None,
) -> None:
    """Warm both sides up, then `mode.runs` alternating pairs of runs; the
    medians and the ratio go to `logging_<name>`. `after(side)` runs after
    each of a side's runs (a write scenario waits for its outbox there)."""
    mode = bench.mode
    sides = [side for side, _level in SIDES]
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
    for i in range(mode.runs):
        for side in sides if i % 2 == 0 else sides[::-1]:
            run = bench.wrk.run(
                urls[side],
                scripts[side](f"run{i + 1}"),
                duration=mode.duration,
                connections=mode.connections,
            )
            runs[side].append(run)
            bench.log(
                f"  logging {name} [{side}] run {i + 1}: {run.rps:,.0f} req/s,"
                f" p99 {run.p99_ms:.2f} ms, failures {run.failures}"
            )
            after(side)
    record(bench, name, runs)


def record(bench: Bench, name: str, runs: dict[str, list[WrkRun]]) -> None:
    default, off = runs["default"], runs["off"]
    ratios = [d.rps / o.rps for d, o in zip(default, off, strict=True) if o.rps]
    ratio = statistics.median(ratios) if ratios else None
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
        pair_ratios=[round(r, 3) for r in ratios],
        failures=failures,
        connections=bench.mode.connections,
    )
    bench.log(
        f"  logging {name}: default / off = "
        + ("-" if ratio is None else f"{ratio:.2f}")
        + f" (target >= {LOGGING_TARGET:.2f})"
    )
    if failures:
        sample = next((r.sample for r in default + off if r.sample), "")
        bench.fail(f"logging_{name}", f"{failures} failed requests; {sample[:300]}")


def logging_phase(bench: Bench) -> None:
    """campaignTotals (cached and not) and createPledge, logs at the default
    against logs off."""
    with ExitStack() as stack:
        servers: dict[str, Process] = {}
        dbs: dict[str, Path] = {}
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
        urls = {side: server.base_url + "/graphql" for side, server in servers.items()}
        compare(
            bench,
            "campaign_totals",
            urls,
            {
                side: _static(
                    bench, graphql_body(TOTALS, {"id": campaign[side]}), graphql=True
                )
                for side in servers
            },
        )
        compare(
            bench,
            "campaign_totals_uncached",
            urls,
            {side: _varied(bench, TOTALS, {"id": campaign[side]}) for side in servers},
        )
        compare(
            bench,
            "create_pledge",
            urls,
            {
                side: pledge_script(bench, server, campaign[side], side)
                for side, server in servers.items()
            },
            # The outbox's work after a run would slow the other side's next run.
            after=lambda side: bench.settle("logging_create_pledge", dbs[side], 0.5),
        )

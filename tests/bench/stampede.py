"""The stampede: a campaign's totals read flat out while donations pour in.

Two wrk processes load one server at once, on one campaign: readers send
campaignTotals as clients send it (the same body again and again, so the
response cache may answer), and writers send createPledge, first at the
mode's pledge rate (500/s in the full run), then flat out. Each side is also
measured alone on the same server, so the report gives what each keeps of its
throughput when the other runs. The readers under paced writes are measured a
second time with every request a cache miss.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.bench import phases, profile, seed
from tests.bench.client import TOTALS, graphql_body
from tests.bench.databases import Database
from tests.bench.processes import Process
from tests.bench.runner import Bench
from tests.bench.wrk import WrkRun

# Paced writers start this much before the readers and stop as long after,
# so every read is measured under writes (wrk runs whole seconds).
WRITER_LEAD_S = 0.5

Script = Callable[[str], Path]


def _both(
    bench: Bench,
    url: str,
    readers: Path,
    writers: Path,
    *,
    writer_connections: int,
    lead: float,
) -> tuple[WrkRun, WrkRun]:
    """Readers and writers at once: (readers' run, writers' run). Writers
    given a `lead` start that much earlier and run 2 x `lead` longer."""
    mode = bench.mode
    with ThreadPoolExecutor(max_workers=2) as pool:
        writing = pool.submit(
            bench.wrk.run,
            url,
            writers,
            duration=mode.duration + 2 * lead,
            connections=writer_connections,
        )
        time.sleep(lead)
        reading = pool.submit(
            bench.wrk.run,
            url,
            readers,
            duration=mode.duration,
            connections=mode.connections,
        )
        return reading.result(), writing.result()


def cache_counts(base_url: str) -> tuple[float, float]:
    """The server's response cache (hits, misses) so far, from /metrics."""
    found = {"hit": 0.0, "miss": 0.0}
    text = httpx.get(base_url + "/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith("careforall_graphql_response_cache_total{"):
            labels, _, value = line.rpartition(" ")
            for result in found:
                if f'result="{result}"' in labels:
                    found[result] = float(value)
    return found["hit"], found["miss"]


def _hit_share(base_url: str, hits_before: float, misses_before: float) -> float | None:
    """The share of the reads since the counts given that the response cache
    answered (while pledges were made, their commits must not end its answers)."""
    hits, misses = cache_counts(base_url)
    answered = (hits - hits_before) + (misses - misses_before)
    return round((hits - hits_before) / answered, 4) if answered else None


def _side(runs: list[WrkRun], alone: dict[str, Any] | None) -> dict[str, Any]:
    """One side's medians over the runs, and its ratio to its run alone."""
    rps = statistics.median(r.rps for r in runs)
    base = (alone or {}).get("rps") or 0
    return {
        "rps": round(rps, 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in runs), 3),
        "p99_ms": round(statistics.median(r.p99_ms for r in runs), 3),
        "requests": sum(r.requests for r in runs),
        "failures": sum(r.failures for r in runs),
        "timeouts": sum(r.timeouts for r in runs),
        "alone_rps": base or None,
        "ratio": round(rps / base, 3) if base else None,
    }


def together(
    bench: Bench,
    name: str,
    url: str,
    readers: Script,
    writers: Script,
    *,
    alone: tuple[str, str],
    rate: int = 0,
) -> dict[str, Any]:
    """`mode.runs` runs of both sides at once, recorded as `name`."""
    mode = bench.mode
    connections = mode.paced_connections if rate else mode.connections
    read_runs: list[WrkRun] = []
    write_runs: list[WrkRun] = []
    base_url = url.removesuffix("/graphql")
    hits_before, misses_before = cache_counts(base_url)
    for i in range(mode.runs):
        label = f"{name}-run{i + 1}"
        read, write = _both(
            bench,
            url,
            readers(label),
            writers(label),
            writer_connections=connections,
            lead=WRITER_LEAD_S if rate else 0.0,
        )
        read_runs.append(read)
        write_runs.append(write)
        bench.log(
            f"  {name} run {i + 1}: reads {read.rps:,.0f} req/s, p50"
            f" {read.p50_ms:.2f} ms, p99 {read.p99_ms:.2f} ms; writes"
            f" {write.rps:,.0f} req/s, p99 {write.p99_ms:.2f} ms; failures"
            f" {read.failures + write.failures}"
        )
        for side, run in (("reads", read), ("writes", write)):
            if run.failures:
                bench.fail(
                    name,
                    f"{run.failures} failed {side} of {run.requests}; "
                    f"first: {run.sample[:300]}",
                )
    read_side = _side(read_runs, bench.scenarios.get(alone[0]))
    read_side["cache_hit_share"] = _hit_share(base_url, hits_before, misses_before)
    return bench.record(
        name,
        kind="stampede",
        rate=rate,
        readers=read_side,
        writers=_side(write_runs, bench.scenarios.get(alone[1])),
        runs={
            "readers": [r.__dict__ for r in read_runs],
            "writers": [w.__dict__ for w in write_runs],
        },
    )


def _profile(
    bench: Bench, server: Process, url: str, readers: Script, writers: Script
) -> None:
    """Sample the server with py-spy while both sides run flat out (unmeasured):
    where the event loop's and the writer's time goes when they share it."""
    if not bench.profiling or bench.mode.profile_seconds <= 0:
        return
    if not profile.available():
        bench.notes.append("py-spy is not installed: no profiles")
        return
    output = bench.workdir / "profile-stampede.txt"
    spy = profile.start(server.pid, bench.mode.profile_seconds, output)
    time.sleep(0.3)
    _both(
        bench,
        url,
        readers("profile"),
        writers("profile"),
        writer_connections=bench.mode.connections,
        lead=0.0,
    )
    _, err = spy.communicate(timeout=60)
    if spy.returncode != 0 or not output.exists():
        bench.notes.append(f"py-spy failed on the stampede: {err.decode()[-300:]}")
        return
    summary = profile.summarise(output)
    summary["raw"] = str(output)
    bench.profiles["stampede_flat"] = summary
    top = ", ".join(f"{p['frame']} {p['share']:.0%}" for p in summary["layers"][:5])
    bench.log(f"  profile stampede_flat: {summary['samples']} samples; {top}")


def stampede_phase(bench: Bench) -> None:
    """Each side alone, then readers under paced writes, then both flat out."""
    mode = bench.mode
    with phases.serving(bench, "stampede", captured=mode.small_pledges) as (
        server,
        seeded,
        db,
    ):
        url = server.base_url + "/graphql"
        campaign = seeded.campaign_ids[0]
        body = graphql_body(TOTALS, {"id": campaign})
        cached = phases.static(bench, body, graphql=True)
        uncached = phases.varied(bench, TOTALS, {"id": campaign})
        pledges, _tokens = phases.pledge_scripts(bench, server, campaign)

        def paced(label: str) -> Path:
            return pledges(label, mode.pledge_rate)

        def flat(label: str) -> Path:
            return pledges(label, 0)

        bench.throughput("stampede_totals_alone", url, cached, kind="read")
        bench.throughput("stampede_totals_uncached_alone", url, uncached, kind="read")
        before = seed.scalar(db, "SELECT count(*) FROM pledges")
        bench.throughput("stampede_pledges_alone", url, flat, kind="write")
        bench.settle("stampede", db)
        together(
            bench,
            "stampede_paced",
            url,
            cached,
            paced,
            alone=("stampede_totals_alone", "stampede_pledges_alone"),
            rate=mode.pledge_rate,
        )
        bench.settle("stampede", db)
        together(
            bench,
            "stampede_paced_uncached",
            url,
            uncached,
            paced,
            alone=("stampede_totals_uncached_alone", "stampede_pledges_alone"),
            rate=mode.pledge_rate,
        )
        bench.settle("stampede", db)
        together(
            bench,
            "stampede_flat",
            url,
            cached,
            flat,
            alone=("stampede_totals_alone", "stampede_pledges_alone"),
        )
        _profile(bench, server, url, cached, flat)
        _check_pledges(bench, db, before)
        bench.check_totals("stampede", db)


def _check_pledges(bench: Bench, db: Database, before: int) -> None:
    """Every createPledge answered without error made its pledge."""
    made = seed.scalar(db, "SELECT count(*) FROM pledges") - before
    answered = sum(
        run["requests"] - run["bad"]
        for name in ("stampede_paced", "stampede_paced_uncached", "stampede_flat")
        for run in bench.scenarios.get(name, {}).get("runs", {}).get("writers", [])
    ) + sum(
        r["requests"] - r["bad"]
        for r in bench.scenarios.get("stampede_pledges_alone", {}).get("runs", [])
    )
    bench.scenarios["stampede_flat"]["pledges_made"] = made
    if made < answered:
        bench.fail("stampede", f"{made} pledges for {answered} answers")

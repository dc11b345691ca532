"""The `workers` phase: one SQLite database served by `careforall serve`
with one process, then by `--workers 2`, in the same run: campaignTotals
(answers kept, and every request a cache miss) and createPledge, so that the
report can say what the second process (and core) gives; then donations
watched by a subscriber, whose pushes follow either process's commits."""

from __future__ import annotations

import json

from tests.bench import live, seed
from tests.bench.client import TOTALS, graphql_body
from tests.bench.phases import pledge_scripts, serving, static, varied
from tests.bench.processes import floor_server
from tests.bench.runner import Bench

COUNTS = (1, 2)


def scenario(workers: int, name: str) -> str:
    """`workers2_campaign_totals` and the like."""
    return f"workers{workers}_{name}"


def floor_read_by_two(bench: Bench) -> None:
    """The Starlette floor's read served by two processes: what a second
    process gives the least an endpoint can cost (floor_read is one)."""
    workdir = bench.workdir / "floor2"
    workdir.mkdir()
    server = floor_server(workdir, workdir / "floor.db", workers=2)
    server.start(timeout=120)
    try:
        bench.throughput(
            "workers2_floor_read",
            server.base_url + "/read",
            static(bench, json.dumps({"id": 500}), graphql=False),
            kind="floor",
            workers=2,
        )
    finally:
        server.stop()


def workers_phase(bench: Bench) -> None:
    mode = bench.mode
    if bench.database.name == "sqlite":  # the Starlette floor is on SQLite
        bench.guard("workers2_floor_read", lambda: floor_read_by_two(bench))
    for count in COUNTS:
        name = f"workers{count}"
        with serving(bench, name, captured=mode.small_pledges, workers=count) as (
            server,
            seeded,
            db,
        ):
            url = server.base_url + "/graphql"
            campaign = seeded.campaign_ids[0]
            bench.throughput(
                scenario(count, "campaign_totals"),
                url,
                static(bench, graphql_body(TOTALS, {"id": campaign}), graphql=True),
                kind="read",
                workers=count,
            )
            bench.throughput(
                scenario(count, "campaign_totals_uncached"),
                url,
                varied(bench, TOTALS, {"id": campaign}),
                kind="read",
                workers=count,
            )
            pledges, tokens = pledge_scripts(bench, server, campaign)
            before = seed.scalar(db, "SELECT count(*) FROM pledges")
            label = scenario(count, "create_pledge")
            summary = bench.throughput(
                label, url, pledges, kind="write", workers=count, tokens=len(tokens)
            )
            bench.settle(label, db)
            made = seed.scalar(db, "SELECT count(*) FROM pledges") - before
            bench.scenarios[label]["pledges_made"] = made
            if made < summary.requests - summary.failures:
                bench.fail(label, f"{made} pledges for {summary.requests} answers")
            # The subscriber and each donation's requests land on either
            # process: with two, about half the pushes follow a commit made
            # by the other process (the change feed's delay is in them).
            live.donation_e2e(
                bench,
                server,
                seeded.campaign_ids[1],
                db,
                name=scenario(count, "donation_e2e"),
            )
            bench.check_totals(name, db)

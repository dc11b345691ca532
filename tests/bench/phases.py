"""Throughput phases: each serves a fresh database and drives it with wrk."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from careforall.payments.signature import sign
from tests.bench import live, on_postgresql, seed
from tests.bench.client import (
    CAMPAIGNS,
    CREATE_PLEDGE,
    TOTALS,
    TYPENAME,
    Api,
    graphql_body,
)
from tests.bench.databases import Database
from tests.bench.processes import Process, careforall_server, floor_server
from tests.bench.runner import Bench
from tests.bench.wrk import write_data_file

WEBHOOK_SECRET = "whsec_bench_" + os.urandom(8).hex()


def static(bench: Bench, body: str, *, graphql: bool) -> Callable[[str], Path]:
    path = bench.wrk.script("static", {"body": body, "check_graphql": graphql})
    return lambda _label: path


def varied(
    bench: Bench, query: str, variables: dict[str, str]
) -> Callable[[str], Path]:
    """The query with a new body on every request: each misses the response
    cache (the nonce goes in `extensions`, which the server ignores)."""
    body = json.dumps(
        {"query": query, "variables": variables, "extensions": {"nonce": "NONCE"}},
        separators=(",", ":"),
    )
    body_format = body.replace("%", "%%").replace('"NONCE"', '"%s"')
    return lambda label: bench.wrk.script(
        "varied",
        {
            "path": "/graphql",
            "body_format": body_format,
            "run_id": f"{label}-{uuid.uuid4().hex[:8]}",
            "check_graphql": True,
        },
    )


@contextmanager
def serving(
    bench: Bench,
    name: str,
    *,
    captured: int,
    pending: int = 0,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[tuple[Process, seed.Seeded, Database]]:
    """A migrated, seeded database (SQLite, or PostgreSQL when the run is on
    it) served by `careforall serve` with `workers` processes (and `env` on
    top of the benchmark's settings); stopped after."""
    workdir = bench.workdir / name
    workdir.mkdir()
    db_path = bench.database.fresh(workdir)
    seeded = seed.seed(
        db_path, campaigns=bench.mode.campaigns, captured=captured, pending=pending
    )
    bench.log(
        f"[{name}] seeded {captured:,} captured + {pending:,} pending pledges"
        f" in {seeded.seconds:.1f}s"
    )
    server = careforall_server(
        workdir, db_path, webhook_secret=WEBHOOK_SECRET, workers=workers
    )
    server.env.update(env or {})
    started = server.start(timeout=1800)
    bench.log(f"[{name}] server ready in {started:.1f}s (pid {server.pid})")
    try:
        yield server, seeded, db_path
        bench.check_server(name, server)
    finally:
        server.stop()


def floors(bench: Bench) -> None:
    """Starlette + SQLite, one row read and one row inserted, with no framework."""
    if bench.database.name == "postgresql":
        on_postgresql.insert_floor(bench)
        return
    workdir = bench.workdir / "floor"
    workdir.mkdir()
    server = floor_server(workdir, workdir / "floor.db")
    server.start(timeout=60)
    bench.log(f"[floor] ready (pid {server.pid})")
    try:
        bench.throughput(
            "floor_read",
            server.base_url + "/read",
            static(bench, json.dumps({"id": 500}), graphql=False),
            kind="floor",
        )
        bench.throughput(
            "floor_insert",
            server.base_url + "/insert",
            static(bench, json.dumps({"amount": 1000}), graphql=False),
            kind="floor",
        )
    finally:
        server.stop()


def main_phase(bench: Bench) -> None:
    """Reads and pledges on a database of `small_pledges` captured pledges."""
    mode = bench.mode
    with serving(bench, "main", captured=mode.small_pledges) as (server, seeded, db):
        url = server.base_url + "/graphql"
        campaign = seeded.campaign_ids[0]
        bench.throughput(
            "floor_graphql",
            url,
            static(bench, graphql_body(TYPENAME), graphql=True),
            kind="floor",
        )
        totals = static(bench, graphql_body(TOTALS, {"id": campaign}), graphql=True)
        bench.throughput(
            "campaign_totals", url, totals, kind="read", pledges=mode.small_pledges
        )
        bench.throughput(
            "campaign_totals_uncached",
            url,
            varied(bench, TOTALS, {"id": campaign}),
            kind="read",
            pledges=mode.small_pledges,
        )
        bench.throughput(
            "campaigns_list",
            url,
            static(bench, graphql_body(CAMPAIGNS), graphql=True),
            kind="read",
            campaigns=mode.campaigns,
        )
        bench.paced(
            "campaign_totals_paced",
            url,
            bench.wrk.script(
                "static",
                {
                    "body": graphql_body(TOTALS, {"id": campaign}),
                    "check_graphql": True,
                    "rate": mode.totals_rate,
                },
            ),
            rate=mode.totals_rate,
        )
        bench.profile("campaign_totals", server, url, totals)

        pledges, tokens = pledge_scripts(bench, server, campaign)
        before = seed.scalar(db, "SELECT count(*) FROM pledges")
        summary = bench.throughput(
            "create_pledge", url, pledges, kind="write", tokens=len(tokens)
        )
        drained = bench.settle("create_pledge", db)
        made = seed.scalar(db, "SELECT count(*) FROM pledges") - before
        bench.scenarios["create_pledge"].update(
            outbox_drain_s=round(drained, 2), pledges_made=made
        )
        if made < summary.requests - summary.failures:
            bench.fail(
                "create_pledge", f"{made} pledges for {summary.requests} answers"
            )
        bench.paced(
            "create_pledge_paced",
            url,
            pledges("paced", mode.pledge_rate),
            rate=mode.pledge_rate,
        )
        bench.profile("create_pledge", server, url, pledges)
        bench.settle("create_pledge", db)
        bench.guard(
            "donation_e2e",
            lambda: live.donation_e2e(bench, server, seeded.campaign_ids[1], db),
        )
        bench.check_totals("main", db)
        bench.scenarios["server_main"] = {
            "kind": "memory",
            "rss_mb": server.rss_mb(),
            "peak_rss_mb": server.peak_rss_mb(),
        }


def pledge_scripts(
    bench: Bench, server: Process, campaign: str
) -> tuple[Callable[..., Path], list[str]]:
    """createPledge with a new idempotency key on every request, by a pool of
    guests: the script maker (`label`, `rate`) and the guests' tokens."""
    with Api(server.base_url) as api:
        tokens = [api.anonymous_token() for _ in range(bench.mode.token_pool)]
    tokens_file = write_data_file(
        bench.workdir / f"tokens-{server.port}.txt", [[t] for t in tokens]
    )
    body_format = (
        graphql_body(
            CREATE_PLEDGE,
            {
                "input": {
                    "campaignId": campaign,
                    "amountCents": 1000,
                    "idempotencyKey": "KEY",
                    "donorName": "Bench Donor",
                }
            },
        )
        .replace("%", "%%")
        .replace('"KEY"', '"%s"')
    )

    def pledges(label: str, rate: int = 0) -> Path:
        return bench.wrk.script(
            "pledge",
            {
                "path": "/graphql",
                "body_format": body_format,
                "data_file": str(tokens_file),
                "run_id": f"{label}-{uuid.uuid4().hex[:8]}",
                "check_graphql": True,
                "rate": rate,
            },
        )

    return pledges, tokens


def _webhook_rows(events: list[tuple[str, str, int]]) -> list[list[str]]:
    """Signed `payment.captured` events: [signature, body] per event."""
    now = int(time.time())
    rows = []
    for event_id, pledge_id, amount in events:
        body = json.dumps(
            {
                "id": event_id,
                "type": "payment.captured",
                "created": now,
                "data": {
                    "pledgeId": pledge_id,
                    "amountCents": amount,
                    "currency": "USD",
                },
            },
            separators=(",", ":"),
        )
        rows.append([sign(WEBHOOK_SECRET, body.encode(), timestamp=now), body])
    return rows


def webhook_phase(bench: Bench) -> None:
    """Captured events for distinct PENDING pledges, each with a new event id."""
    mode = bench.mode
    per_run = mode.webhook_events
    batches = mode.runs + (1 if mode.warmup > 0 else 0)
    with serving(
        bench, "webhooks", captured=mode.small_pledges, pending=per_run * batches
    ) as (server, seeded, db):
        url = server.base_url + "/webhooks/payments"
        pool = iter(seeded.pending)
        first_run: list[tuple[str, str, int]] = []

        def fresh(label: str) -> Path:
            # Signed just before the run: signatures expire after 300 s.
            events = [
                (f"evt_bench_{label}_{n}", pid, amount)
                for n, (pid, amount) in zip(range(per_run), pool, strict=False)
            ]
            if label == "run1":
                first_run.extend(events)
            data = write_data_file(
                bench.workdir / f"webhooks-{label}.txt", _webhook_rows(events)
            )
            return bench.wrk.script(
                "webhook",
                {
                    "path": "/webhooks/payments",
                    "data_file": str(data),
                    "count_duplicates": True,
                },
            )

        summary = bench.throughput(
            "webhooks", url, fresh, kind="write", events_per_run=per_run
        )
        dups = sum(r.duplicates for r in summary.runs)
        reused = sum(r.reused for r in summary.runs)
        bench.scenarios["webhooks"].update(duplicates=dups, reused_events=reused)
        if reused:
            bench.notes.append(
                f"webhooks: {reused} requests resent an event (more than "
                f"{per_run:,} per run were sent); those were answered as duplicates"
            )
        drained = bench.settle("webhooks", db)
        bench.scenarios["webhooks"]["outbox_drain_s"] = round(drained, 2)
        applied = seed.scalar(db, "SELECT count(*) FROM webhook_events")
        captured = (
            seed.scalar(db, "SELECT count(*) FROM pledges WHERE status = 'CAPTURED'")
            - mode.small_pledges
        )
        bench.scenarios["webhooks"].update(
            events_applied=applied, pledges_captured=captured
        )
        if applied != captured:
            bench.fail("webhooks", f"{applied} events applied but {captured} captured")

        # The events of the first run that the server applied, sent again:
        # every one must be answered as a duplicate and change nothing.
        applied_ids = {
            event_id
            for (event_id,) in seed.query(
                db,
                "SELECT event_id FROM webhook_events WHERE event_id LIKE ?",
                ("evt_bench_run1_%",),
            )
        }
        replay = write_data_file(
            bench.workdir / "webhooks-replay.txt",
            _webhook_rows([e for e in first_run if e[0] in applied_ids]),
        )
        script = bench.wrk.script(
            "webhook",
            {
                "path": "/webhooks/payments",
                "data_file": str(replay),
                "count_duplicates": True,
            },
        )
        summary = bench.throughput(
            "webhooks_duplicate", url, lambda _label: script, kind="write"
        )
        not_dup = sum(r.requests - r.duplicates - r.failures for r in summary.runs)
        if not_dup:
            bench.fail("webhooks_duplicate", f"{not_dup} replays were not duplicates")
        after = seed.scalar(db, "SELECT count(*) FROM webhook_events")
        if after != applied:
            bench.fail(
                "webhooks_duplicate",
                f"{after - applied} more events applied by the replay",
            )
        bench.check_totals("webhooks", db)


def large_phase(bench: Bench) -> None:
    """campaignTotals with `large_pledges` captured pledges; the server's memory."""
    mode = bench.mode
    with serving(bench, "large", captured=mode.large_pledges) as (server, seeded, db):
        rss_start = server.rss_mb()
        url = server.base_url + "/graphql"
        totals = static(
            bench, graphql_body(TOTALS, {"id": seeded.campaign_ids[0]}), graphql=True
        )
        bench.throughput(
            "campaign_totals_large",
            url,
            totals,
            kind="read",
            pledges=mode.large_pledges,
            seed_s=round(seeded.seconds, 1),
            server_start_s=round(server.ready_seconds, 1),
        )
        bench.throughput(
            "campaign_totals_large_uncached",
            url,
            varied(bench, TOTALS, {"id": seeded.campaign_ids[0]}),
            kind="read",
            pledges=mode.large_pledges,
        )
        bench.scenarios["server_large"] = {
            "kind": "memory",
            "pledges": mode.large_pledges,
            "rss_after_start_mb": rss_start,
            "rss_mb": server.rss_mb(),
            "peak_rss_mb": server.peak_rss_mb(),
        }
        bench.log(
            f"  server RSS with {mode.large_pledges:,} pledges: "
            f"{server.rss_mb():.0f} MB (peak {server.peak_rss_mb():.0f} MB)"
        )


def viral_phase(bench: Bench) -> None:
    """The viral campaign page: many subscribers, a slow one, donations captured."""
    with serving(bench, "viral", captured=bench.mode.small_pledges) as (
        server,
        seeded,
        db,
    ):
        live.viral_page(bench, server, seeded.campaign_ids[0], db)
        bench.check_totals("viral", db)

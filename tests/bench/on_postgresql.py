"""The phases on PostgreSQL: each runs as on SQLite, against databases on the
run's own cluster, and its scenarios are recorded under `pg_` beside
SQLite's (the floors stay SQLite's: every ratio is against them)."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.bench.databases import ON_POSTGRESQL, PREFIX, Backend
from tests.bench.processes import floor_server
from tests.bench.runner import Bench


def run_phase(
    bench: Bench, backend: Backend, name: str, phase: Callable[[Bench], None]
) -> None:
    """Run `phase` with its databases made by `backend`; on PostgreSQL, its
    scenarios are recorded as `pg_<name>`, or the phase is skipped if it
    cannot run there."""
    if backend.name == "sqlite":
        bench.guard(name, lambda: phase(bench))
        return
    if name not in ON_POSTGRESQL:
        note = f"{name}: not measured on PostgreSQL (SQLite only), skipped"
        bench.log(f"[{name}] {note}")
        bench.notes.append(note)
        return
    kept, bench.scenarios = bench.scenarios, {}
    sqlite, bench.database = bench.database, backend
    # The phase's folders beside SQLite's, not in them.
    workdir, bench.workdir = bench.workdir, bench.workdir / backend.name
    bench.workdir.mkdir(exist_ok=True)
    try:
        bench.guard(f"{PREFIX}{name}", lambda: phase(bench))
    finally:
        for scenario, result in bench.scenarios.items():
            kept[PREFIX + scenario] = {**result, "database": "postgresql"}
        bench.scenarios, bench.database, bench.workdir = kept, sqlite, workdir


def insert_floor(bench: Bench) -> None:
    """Starlette + PostgreSQL: one row inserted and committed a request, on
    the run's cluster (the floor of createPledge on PostgreSQL)."""
    workdir = bench.workdir / "floor-postgresql"
    workdir.mkdir()
    server = floor_server(workdir, bench.database.empty())
    server.start(timeout=60)
    bench.log(f"[floor] PostgreSQL floor ready (pid {server.pid})")
    try:
        script = bench.wrk.script(
            "static", {"body": json.dumps({"amount": 1000}), "check_graphql": False}
        )
        bench.throughput(
            "floor_insert", server.base_url + "/insert", lambda _: script, kind="floor"
        )
    finally:
        server.stop()

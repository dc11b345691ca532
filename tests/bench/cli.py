"""`python -m tests.bench [--smoke] [--json PATH]`: run every scenario, print the
tables, write the JSON. Exits 1 only when a scenario failed (errors, non-2xx,
lost totals), never because of a timing."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from tests.bench import (
    databases,
    logging_cost,
    on_postgresql,
    phases,
    postgresql_report,
    report,
    stampede,
    stampede_report,
    workers,
)
from tests.bench.config import mode_named
from tests.bench.runner import Bench
from tests.bench.wrk import Wrk, WrkMissing, wrk_version

PHASES: dict[str, Callable[[Bench], None]] = {
    "floors": phases.floors,
    "main": phases.main_phase,
    "logging": logging_cost.logging_phase,
    "webhooks": phases.webhook_phase,
    "large": phases.large_phase,
    "viral": phases.viral_phase,
    "stampede": stampede.stampede_phase,
    "workers": workers.workers_phase,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="~1 s per scenario, tiny data (for CI)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--only", nargs="+", choices=list(PHASES), help="run only these phases"
    )
    parser.add_argument("--runs", type=int, help="measured runs per scenario")
    parser.add_argument("--duration", type=float, help="seconds per measured run")
    parser.add_argument("--connections", type=int, help="wrk connections")
    parser.add_argument("--threads", type=int, help="wrk threads")
    parser.add_argument(
        "--large-pledges", type=int, help="pledges in the large database"
    )
    parser.add_argument("--subscribers", type=int, help="viral page subscribers")
    parser.add_argument(
        "--pledge-rate",
        type=int,
        help="createPledge req/s of the fixed-rate runs and the stampede",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample the server with py-spy (default: on in full mode)",
    )
    parser.add_argument(
        "--database",
        nargs="+",
        choices=databases.NAMES,
        default=["sqlite"],
        help="serve the phases on these databases (postgresql: a throwaway "
        "cluster on 127.0.0.1; phases "
        + ", ".join(databases.ON_POSTGRESQL)
        + "); the floors always run on SQLite too",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser


def phase_databases(name: str, wanted: Sequence[str]) -> list[str]:
    """The databases a phase runs on: those asked, and always SQLite for the
    floors (every ratio is against SQLite's floors)."""
    if name == "floors" and "sqlite" not in wanted:
        return ["sqlite", *wanted]
    return list(wanted)


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": databases.server_version(),
        "wrk": wrk_version(),
        "load_average": os.getloadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        version = wrk_version()
    except WrkMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mode = mode_named(
        "smoke" if args.smoke else "full",
        runs=args.runs,
        duration=args.duration,
        connections=args.connections,
        threads=args.threads,
        large_pledges=args.large_pledges,
        subscribers=args.subscribers,
        pledge_rate=args.pledge_rate,
    )
    profiling = (not args.smoke) if args.profile is None else args.profile
    workdir = Path(tempfile.mkdtemp(prefix="careforall-bench-"))
    bench = Bench(
        mode=mode,
        workdir=workdir,
        wrk=Wrk(workdir=workdir, threads=mode.threads, timeout=mode.timeout),
        profiling=profiling,
        log=lambda line: print(line, flush=True),
    )
    started = datetime.now(UTC)
    began = time.monotonic()
    machine_before = machine()
    bench.log(f"careforall benchmark, {mode.name} mode, {version}, work in {workdir}")
    backends = {name: databases.Backend(name) for name in args.database}
    backends.setdefault("sqlite", databases.Backend("sqlite"))
    try:
        for name, phase in PHASES.items():
            if args.only and name not in args.only:
                continue
            for database in phase_databases(name, args.database):
                bench.log(
                    f"[{name}] on {database}, load average {os.getloadavg()[0]:.2f}"
                )
                on_postgresql.run_phase(bench, backends[database], name, phase)
    finally:
        for backend in backends.values():
            backend.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - began
    more = stampede_report.TARGETS
    if "postgresql" in args.database:
        more = more + postgresql_report.TARGETS
    targets = report.evaluate(
        bench.scenarios,
        verdicts=mode.name == "full",
        more=more,
        phases=args.only or list(PHASES),
    )
    print()
    print("SQLite:" if "sqlite" in args.database else "SQLite (floors only):")
    print(report.scenario_table(bench.scenarios))
    print()
    if postgresql_report.table(bench.scenarios):
        print("PostgreSQL beside SQLite:")
        print(postgresql_report.table(bench.scenarios))
        print()
    for database in ("sqlite", "postgresql"):
        stampede = stampede_report.table(bench.scenarios, database)
        if stampede:
            print(stampede)
            print()
    print(report.target_table(targets))
    print()
    print(report.memory_lines(bench.scenarios))
    for note in bench.notes:
        print(f"note: {note}")
    if mode.name == "smoke":
        print("smoke mode: tiny data and ~1 s runs; verdicts are not meaningful")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "mode": mode.name,
                    "command": "python -m tests.bench " + " ".join(sys.argv[1:]),
                    "started": started.isoformat(timespec="seconds"),
                    "seconds": round(elapsed, 1),
                    "machine": machine_before,
                    "load_average_after": os.getloadavg(),
                    "settings": mode.__dict__,
                    "scenarios": bench.scenarios,
                    "targets": targets,
                    "profiles": bench.profiles,
                    "failures": bench.failures,
                    "notes": bench.notes,
                },
                indent=2,
                default=str,
            )
        )
    print(f"finished in {elapsed:.0f}s", end="")
    if bench.failures:
        print(f"; {len(bench.failures)} FAILED:")
        for failure in bench.failures:
            print(f"  - {failure}")
        return 1
    print("; no scenario failed")
    return 0

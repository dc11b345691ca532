"""The run's state: results, failures, and the ways a scenario drives load."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import profile, seed
from tests.bench.config import Mode
from tests.bench.databases import Backend, Database
from tests.bench.processes import Process
from tests.bench.wrk import Summary, Wrk, WrkRun


@dataclass
class Bench:
    mode: Mode
    workdir: Path
    wrk: Wrk
    profiling: bool
    log: Callable[[str], None] = print
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Where the phases' databases are made (SQLite unless --database says).
    database: Backend = field(default_factory=Backend)

    def fail(self, scenario: str, message: str) -> None:
        self.failures.append(f"{scenario}: {message}")
        self.log(f"  FAILED {scenario}: {message}")

    def guard(self, scenario: str, fn: Callable[[], None]) -> None:
        """Run one phase; a crash is recorded and the benchmark goes on."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - report and keep going
            self.fail(scenario, f"crashed: {str(exc)[:400] or repr(exc)}")
            self.log(traceback.format_exc())

    def record(self, name: str, **result: Any) -> dict[str, Any]:
        self.scenarios[name] = result
        return result

    def throughput(
        self,
        name: str,
        url: str,
        script: Callable[[str], Path],
        *,
        kind: str,
        connections: int | None = None,
        **extra: Any,
    ) -> Summary:
        """Warm up, then `mode.runs` runs of `mode.duration`; medians recorded.

        `script(label)` gives the Lua script for one run ("warmup", "run1", ...),
        so a scenario can prepare fresh data per run.
        """
        conns = connections or self.mode.connections
        if self.mode.warmup > 0:
            self.wrk.run(
                url, script("warmup"), duration=self.mode.warmup, connections=conns
            )
        summary = Summary()
        for i in range(self.mode.runs):
            run = self.wrk.run(
                url,
                script(f"run{i + 1}"),
                duration=self.mode.duration,
                connections=conns,
            )
            summary.runs.append(run)
            self.log(
                f"  {name} run {i + 1}: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms,"
                f" p99 {run.p99_ms:.2f} ms, failures {run.failures},"
                f" timeouts {run.timeouts}"
            )
        if summary.failures:
            self.fail(
                name,
                f"{summary.failures} failed requests of {summary.requests}; "
                f"first: {summary.sample()[:300]}",
            )
        self.record(name, kind=kind, connections=conns, **summary.as_dict(), **extra)
        return summary

    def paced(
        self, name: str, url: str, script: Path, *, rate: int, **extra: Any
    ) -> WrkRun:
        """One fixed-rate run: latency at `rate` requests a second."""
        run = self.wrk.run(
            url,
            script,
            duration=self.mode.paced_duration,
            connections=self.mode.paced_connections,
        )
        self.log(
            f"  {name}: {run.rps:,.0f} req/s of {rate:,} asked,"
            f" p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms,"
            f" late sends {run.behind}, failures {run.failures},"
            f" timeouts {run.timeouts}"
        )
        if run.failures:
            self.fail(
                name, f"{run.failures} failed requests; first: {run.sample[:300]}"
            )
        self.record(
            name,
            kind="paced",
            rate=rate,
            achieved_rps=round(run.rps, 1),
            p50_ms=round(run.p50_ms, 3),
            p99_ms=round(run.p99_ms, 3),
            p999_ms=round(run.p999_ms, 3),
            max_ms=round(run.max_ms, 3),
            requests=run.requests,
            late_sends=run.behind,
            max_lag_ms=round(run.max_lag_ms, 2),
            connections=self.mode.paced_connections,
            failures=run.failures,
            timeouts=run.timeouts,
            **extra,
        )
        return run

    def profile(
        self, name: str, server: Process, url: str, script: Callable[[str], Path]
    ) -> None:
        """Sample the server with py-spy during an extra, unmeasured load run."""
        if not self.profiling or self.mode.profile_seconds <= 0:
            return
        if not profile.available():
            self.notes.append("py-spy is not installed: no profiles")
            self.profiling = False
            return
        output = self.workdir / f"profile-{name}.txt"
        spy = profile.start(server.pid, self.mode.profile_seconds, output)
        time.sleep(0.3)
        self.wrk.run(
            url,
            script("profile"),
            duration=self.mode.profile_seconds + 1,
            connections=self.mode.connections,
        )
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0 or not output.exists():
            self.notes.append(f"py-spy failed on {name}: {err.decode()[-300:]}")
            return
        summary = profile.summarise(output)
        summary["raw"] = str(output)
        self.profiles[name] = summary
        top = ", ".join(f"{p['frame']} {p['share']:.0%}" for p in summary["layers"][:5])
        self.log(f"  profile {name}: {summary['samples']} samples; {top}")

    def settle(self, name: str, db_path: Database, quiet: float = 1.0) -> float:
        """Wait until the server is done: the outbox and the provider's webhooks
        drained, and no request still writing (the newest outbox event has not
        changed for `quiet` seconds; wrk leaves requests in flight when it
        stops). Returns the seconds until the last change."""
        began = time.monotonic()
        deadline = began + self.mode.settle_timeout
        last: tuple[Any, ...] | None = None
        changed = began
        while True:
            state = seed.query(
                db_path,
                "SELECT (SELECT max(id) FROM outbox_events), "
                "(SELECT count(*) FROM outbox_events WHERE status = 'pending'), "
                "(SELECT count(*) FROM sim_webhooks WHERE delivered_at IS NULL)",
            )[0]
            now = time.monotonic()
            if state != last:
                last, changed = state, now
            elif state[1] == 0 and state[2] == 0 and now - changed >= quiet:
                return changed - began
            if now > deadline:
                self.fail(
                    name,
                    f"outbox not drained after {self.mode.settle_timeout:.0f}s "
                    f"({state[1]} events, {state[2]} webhooks waiting)",
                )
                return now - began
            time.sleep(0.1)

    def check_totals(self, name: str, db_path: Database) -> None:
        """Once the outbox has drained, every campaign's kept totals equal the
        sums of its CAPTURED pledges."""
        self.settle(name, db_path)
        wrong = seed.query(
            db_path,
            "SELECT t.campaign_id, t.raised_cents, t.pledge_count, "
            "COALESCE(s.raised, 0), COALESCE(s.n, 0) FROM campaign_totals t "
            "LEFT JOIN (SELECT campaign_id, SUM(amount_cents) AS raised, COUNT(*) AS n "
            "FROM pledges WHERE status = 'CAPTURED' GROUP BY campaign_id) s "
            "ON s.campaign_id = t.campaign_id "
            "WHERE t.raised_cents != COALESCE(s.raised, 0) "
            "OR t.pledge_count != COALESCE(s.n, 0)",
        )
        if wrong:
            self.fail(name, f"totals differ from captured pledges: {wrong[:3]}")

    def check_server(self, name: str, server: Process) -> None:
        if not server.alive():
            self.fail(name, "the server died:\n" + server.log_tail())
        errors = server.logged_errors()
        if errors:
            self.fail(
                name, f"{len(errors)} errors in the server log; first: {errors[0]}"
            )

"""The benchmark's target table: every target belongs to a phase, and a
target whose phase was left out of a run says so instead of a miss."""

from __future__ import annotations

from tests.bench import postgresql_report, report, stampede_report
from tests.bench.cli import PHASES

ALL = report.TARGETS + stampede_report.TARGETS + postgresql_report.TARGETS


def test_every_target_belongs_to_a_phase_of_the_benchmark() -> None:
    assert {report.phase_of(target) for target in ALL} <= set(PHASES)


def test_a_target_of_a_phase_not_run_is_not_run_not_missed() -> None:
    scenarios = {
        "stampede_totals_alone": {"rps": 1000.0},
        "stampede_paced": {"reads_rps": 900.0},
    }
    targets = report.evaluate(
        scenarios,
        verdicts=True,
        more=stampede_report.TARGETS,
        phases=["floors", "stampede"],
    )
    verdicts = {t["target"]: t["verdict"] for t in targets}

    assert verdicts["pledge_rps"] == "not run"
    assert verdicts["logging_create_pledge"] == "not run"
    assert verdicts["workers_totals"] == "not run"
    # The phase that ran is judged: no figure for a measured target is a miss.
    assert verdicts["stampede_writes_flat"] == "MISS"
    table = report.target_table(targets)
    assert (
        "| createPledge >= 1,000 req/s, synchronous=FULL | - | - | not run |" in table
    )

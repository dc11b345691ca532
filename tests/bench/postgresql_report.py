"""PostgreSQL's figures beside SQLite's (see on_postgresql.py), in report.py's
style: one table with both databases' throughput, each compared with the
same run's SQLite floors, and the target that PostgreSQL was measured with
one and two processes."""

from __future__ import annotations

from tests.bench.databases import PREFIX
from tests.bench.report import ROWS, Scenarios, Target, _fmt, _get, _ratio, _x

# The scenarios measured on both databases, in the table's order.
COMPARED = (
    "floor_insert",
    "floor_graphql",
    "campaign_totals",
    "campaign_totals_uncached",
    "campaigns_list",
    "create_pledge",
    "campaign_totals_paced",
    "create_pledge_paced",
    "donation_e2e",
    "workers1_campaign_totals",
    "workers2_campaign_totals",
    "workers1_campaign_totals_uncached",
    "workers2_campaign_totals_uncached",
    "workers1_create_pledge",
    "workers2_create_pledge",
    "workers1_donation_e2e",
    "workers2_donation_e2e",
)
# 2 processes against 1, on each database.
SCALING = (
    ("campaign_totals", "campaignTotals"),
    ("campaign_totals_uncached", "campaignTotals, every request a cache miss"),
    ("create_pledge", "createPledge"),
)
_TEXT = {name: text for name, text, _, _ in ROWS}
_FLOOR = {name: floor for name, _, floor, _ in ROWS}
_EXTRA = {
    "campaign_totals_paced": "campaignTotals at a fixed rate ({rate}/s asked)",
    "create_pledge_paced": "createPledge at a fixed rate ({rate}/s asked)",
    "donation_e2e": "donation end to end: authorize answer -> push",
    "workers1_donation_e2e": "1 process: donation -> push",
    "workers2_donation_e2e": "2 workers: donation -> push",
}


def _rps(s: Scenarios, name: str) -> str:
    return _fmt(_get(s, f"{name}.rps"), 0)


def _cells(s: Scenarios, name: str) -> str:
    """req/s, p50 and p99 of a throughput or fixed-rate run, or a live one's
    latencies."""
    run = s.get(name) or {}
    if run.get("kind") == "live":
        lat = run.get("answer_to_push") or {}
        return f"- | {_fmt(lat.get('p50_ms'), 2)} | {_fmt(lat.get('p99_ms'), 2)}"
    rps = run.get("achieved_rps", run.get("rps"))
    return (
        f"{_fmt(rps, 0)} | {_fmt(run.get('p50_ms'), 2)} | {_fmt(run.get('p99_ms'), 2)}"
    )


def _row(s: Scenarios, name: str) -> str:
    pg = PREFIX + name
    floor = _FLOOR.get(name)
    text = _TEXT.get(name) or _EXTRA[name]
    for key in ("pledges", "rate"):
        value = _get(s, f"{pg}.{key}") or _get(s, f"{name}.{key}")
        text = text.replace("{" + key + "}", _fmt(value))
    sqlite_floor = floor
    if name == "floor_insert":
        text = "floor: Starlette, insert 1 row, 1 commit (each database's own)"
        floor, sqlite_floor = "floor_insert", None
    pg_floor = None
    if floor == "floor_insert" and name != "floor_insert":
        pg_floor = _ratio(s, pg, PREFIX + "floor_insert")
    return (
        f"| {text} | {_cells(s, name)} | {_x(_ratio(s, name, sqlite_floor))} | "
        f"{_cells(s, pg)} | {_x(_ratio(s, pg, floor))} | {_x(pg_floor)} | "
        f"{_x(_ratio(s, pg, name))} |"
    )


def table(scenarios: Scenarios) -> str:
    """Both databases side by side; empty when nothing ran on PostgreSQL."""
    if not any(name.startswith(PREFIX) for name in scenarios):
        return ""
    lines = [
        "| scenario | SQLite req/s | p50 ms | p99 ms | x floor | PostgreSQL req/s"
        " | p50 ms | p99 ms | x floor | x PostgreSQL insert floor"
        " | PostgreSQL / SQLite |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in COMPARED:
        if PREFIX + name in scenarios or name in scenarios:
            lines.append(_row(scenarios, name))
    for name, text in SCALING:
        one, two = f"workers1_{name}", f"workers2_{name}"
        if f"{PREFIX}{two}" in scenarios or two in scenarios:
            sqlite = _x(_ratio(scenarios, two, one))
            pg = _x(_ratio(scenarios, PREFIX + two, PREFIX + one))
            lines.append(
                f"| 2 workers / 1 process: {text} | - | - | - | {sqlite} | - | - | - |"
                f" {pg} | - | - |"
            )
    lines.append(
        "\n`x floor`: against SQLite's Starlette floors (read or insert) measured"
        " in the same run; PostgreSQL's insert floor is the same Starlette app"
        " committing to the run's PostgreSQL cluster."
    )
    return "\n".join(lines)


def _measured(s: Scenarios) -> float | None:
    """How many of the 1- and 2-process scenarios ran on PostgreSQL."""
    names = [f"{PREFIX}workers{n}_{name}" for n in (1, 2) for name, _ in SCALING]
    return float(sum(1 for name in names if _get(s, f"{name}.rps")))


def _scaling_note(s: Scenarios) -> str:
    parts = []
    for name, text in SCALING:
        ratio = _ratio(s, f"{PREFIX}workers2_{name}", f"{PREFIX}workers1_{name}")
        parts.append(f"{text} {_x(ratio)}")
    return "2 workers / 1 process: " + ", ".join(parts)


TARGETS = [
    Target(
        "postgresql_processes",
        "PostgreSQL: campaignTotals, cache misses, createPledge with 1 and 2"
        " processes (6 scenarios)",
        "measured",
        _measured,
        lambda v: v >= 2 * len(SCALING),
        note=_scaling_note,
    ),
]

"""The stampede's table and targets (see stampede.py), in report.py's style."""

from __future__ import annotations

from collections.abc import Callable

from tests.bench.databases import PREFIX
from tests.bench.report import Scenarios, Target, _fmt, _get, _x

# A paced run whose writers sent less than this share of the asked rate
# measured the readers under a lighter load: its targets count as missed.
HELD = 0.95


def _held(s: Scenarios) -> bool:
    run = s.get("stampede_paced")
    if not run or not run.get("rate"):
        return False
    return bool(run["writers"]["rps"] >= HELD * run["rate"])


def _paced(path: str) -> Callable[[Scenarios], float | None]:
    def measure(s: Scenarios) -> float | None:
        value = _get(s, path)
        return None if value is None or not _held(s) else float(value)

    return measure


def _ratio(path: str) -> Callable[[Scenarios], float | None]:
    def measure(s: Scenarios) -> float | None:
        value = _get(s, path)
        return None if value is None else float(value)

    return measure


def _held_note(s: Scenarios) -> str:
    run = s.get("stampede_paced") or {}
    return (
        f"createPledge: {_fmt(_get(s, 'stampede_paced.writers.rps'), 0)} of"
        f" {_fmt(run.get('rate'))} req/s held"
    )


def _alone_note(side: str, scenario: str) -> Callable[[Scenarios], str]:
    def note(s: Scenarios) -> str:
        return (
            f"{_fmt(_get(s, f'{scenario}.{side}.rps'), 0)} of"
            f" {_fmt(_get(s, f'{scenario}.{side}.alone_rps'), 0)} req/s alone"
        )

    return note


TARGETS = [
    Target(
        "stampede_reads_paced",
        "stampede: campaignTotals keeps >= 0.8x while 500 pledges/s are made",
        "x",
        _paced("stampede_paced.readers.ratio"),
        lambda v: v >= 0.8,
        note=lambda s: (
            _alone_note("readers", "stampede_paced")(s) + "; " + _held_note(s)
        ),
    ),
    Target(
        "stampede_p99_paced",
        "stampede: campaignTotals p99 < 25 ms while 500 pledges/s are made",
        "ms",
        _paced("stampede_paced.readers.p99_ms"),
        lambda v: v < 25,
        note=_held_note,
    ),
    Target(
        "stampede_reads_flat",
        "stampede flat out: campaignTotals keeps >= 0.6x",
        "x",
        _ratio("stampede_flat.readers.ratio"),
        lambda v: v >= 0.6,
        note=_alone_note("readers", "stampede_flat"),
    ),
    Target(
        "stampede_writes_flat",
        "stampede flat out: createPledge keeps >= 0.6x",
        "x",
        _ratio("stampede_flat.writers.ratio"),
        lambda v: v >= 0.6,
        note=_alone_note("writers", "stampede_flat"),
    ),
]

_ROWS = [
    ("stampede_paced", "campaignTotals flat out + createPledge at {rate}/s"),
    (
        "stampede_paced_uncached",
        "campaignTotals flat out, every request a cache miss, + createPledge"
        " at {rate}/s",
    ),
    ("stampede_flat", "campaignTotals and createPledge both flat out"),
]


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def table(scenarios: Scenarios, database: str = "sqlite") -> str:
    """Each side alone, then together: throughput, latency, share kept; on
    `database` (PostgreSQL's scenarios are recorded under PREFIX)."""
    title = "stampede (one campaign)"
    if database == "postgresql":
        title = "stampede on PostgreSQL (one campaign)"
        scenarios = {
            name.removeprefix(PREFIX): run
            for name, run in scenarios.items()
            if name.startswith(PREFIX)
        }
    if not any(name in scenarios for name, _ in _ROWS):
        return ""
    lines = [
        f"| {title} | reads req/s | reads p50 ms | reads p99 ms |"
        " reads x alone | reads from cache | writes req/s | writes p99 ms |"
        " writes x alone |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, text in (
        ("stampede_totals_alone", "campaignTotals alone"),
        ("stampede_totals_uncached_alone", "campaignTotals alone, cache misses"),
    ):
        run = scenarios.get(name)
        if run:
            lines.append(
                f"| {text} | {_fmt(run.get('rps'), 0)} | {_fmt(run.get('p50_ms'), 2)}"
                f" | {_fmt(run.get('p99_ms'), 2)} | - | - | - | - | - |"
            )
    run = scenarios.get("stampede_pledges_alone")
    if run:
        lines.append(
            f"| createPledge alone | - | - | - | - | - | {_fmt(run.get('rps'), 0)} |"
            f" {_fmt(run.get('p99_ms'), 2)} | - |"
        )
    for name, text in _ROWS:
        run = scenarios.get(name)
        if not run:
            continue
        reads, writes = run["readers"], run["writers"]
        lines.append(
            f"| {text.replace('{rate}', _fmt(run.get('rate')))} |"
            f" {_fmt(reads['rps'], 0)} | {_fmt(reads['p50_ms'], 2)} |"
            f" {_fmt(reads['p99_ms'], 2)} | {_x(reads['ratio'])} |"
            f" {_share(reads.get('cache_hit_share'))} |"
            f" {_fmt(writes['rps'], 0)} | {_fmt(writes['p99_ms'], 2)} |"
            f" {_x(writes['ratio'] if not run.get('rate') else None)} |"
        )
    return "\n".join(lines)

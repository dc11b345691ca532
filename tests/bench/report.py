"""The benchmark's table (Markdown, for the terminal and docs/performance.md)
and JSON."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

Scenarios = dict[str, dict[str, Any]]

# Which floor each throughput scenario is compared with, and what it is.
ROWS: list[tuple[str, str, str | None, bool]] = [
    # name, description, Starlette floor, compare with the GraphQL floor
    ("floor_read", "floor: Starlette, read 1 SQLite row", None, False),
    ("floor_insert", "floor: Starlette, insert 1 row, 1 commit", None, False),
    ("floor_graphql", "floor: GraphQL `{ __typename }`", "floor_read", False),
    ("campaign_totals", "campaignTotals ({pledges} pledges)", "floor_read", True),
    (
        "campaign_totals_uncached",
        "campaignTotals ({pledges} pledges), every request a cache miss",
        "floor_read",
        True,
    ),
    ("campaigns_list", "campaigns list (20, with totals)", "floor_read", True),
    ("campaign_totals_large", "campaignTotals ({pledges} pledges)", "floor_read", True),
    (
        "campaign_totals_large_uncached",
        "campaignTotals ({pledges} pledges), every request a cache miss",
        "floor_read",
        True,
    ),
    ("create_pledge", "createPledge, unique keys", "floor_insert", True),
    ("webhooks", "webhooks: payment.captured, new ids", "floor_insert", False),
    ("webhooks_duplicate", "webhooks: replays (deduplicated)", "floor_insert", False),
    ("workers2_floor_read", "floor: Starlette read, 2 workers", "floor_read", False),
    ("workers1_campaign_totals", "1 process: campaignTotals", "floor_read", True),
    ("workers2_campaign_totals", "2 workers: campaignTotals", "floor_read", True),
    (
        "workers1_campaign_totals_uncached",
        "1 process: campaignTotals, every request a cache miss",
        "floor_read",
        True,
    ),
    (
        "workers2_campaign_totals_uncached",
        "2 workers: campaignTotals, every request a cache miss",
        "floor_read",
        True,
    ),
    ("workers1_create_pledge", "1 process: createPledge", "floor_insert", True),
    ("workers2_create_pledge", "2 workers: createPledge", "floor_insert", True),
]


def _get(scenarios: Scenarios, path: str) -> Any:
    value: Any = scenarios
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _ratio(scenarios: Scenarios, name: str, floor: str | None) -> float | None:
    if floor is None:
        return None
    mine, base = _get(scenarios, f"{name}.rps"), _get(scenarios, f"{floor}.rps")
    if not mine or not base:
        return None
    return float(mine) / float(base)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    unit: str
    measure: Callable[[Scenarios], float | None]
    passes: Callable[[float], bool]
    ratio: Callable[[Scenarios], float | None] = lambda s: None
    note: Callable[[Scenarios], str] = lambda s: ""


def _paced_p99(name: str) -> Callable[[Scenarios], float | None]:
    """The p99 at the asked rate; None when the rate was not held (95%)."""

    def measure(s: Scenarios) -> float | None:
        run = s.get(name)
        if not run or run.get("achieved_rps", 0) < 0.95 * run.get("rate", 0):
            return None
        return float(run["p99_ms"])

    return measure


def _paced_note(name: str) -> Callable[[Scenarios], str]:
    def note(s: Scenarios) -> str:
        run = s.get(name) or {}
        return (
            f"{_fmt(run.get('achieved_rps'), 0)} of {_fmt(run.get('rate'))} req/s held"
        )

    return note


def _float(path: str) -> Callable[[Scenarios], float | None]:
    def measure(s: Scenarios) -> float | None:
        value = _get(s, path)
        return None if value is None else float(value)

    return measure


def _large_vs_small(s: Scenarios) -> float | None:
    # Cache misses: the cached answers would hide what the database costs.
    return _ratio(s, "campaign_totals_large_uncached", "campaign_totals_uncached")


def _slowest_others(s: Scenarios) -> float | None:
    run = s.get("viral_page")
    if not run or run.get("missing"):
        return None
    value = _get(s, "viral_page.capture_to_receipt.max_ms")
    return None if value is None else float(value)


# The least share of a scenario's throughput without logs it keeps with them.
LOGGING_TARGET = 0.90


def _logging_target(name: str, text: str) -> Target:
    """Request logging at the default keeps >= 0.90x of a scenario's throughput
    with logging off (tests/bench/logging_cost.py)."""

    def note(s: Scenarios) -> str:
        run = s.get(f"logging_{name}") or {}
        return (
            f"INFO {_fmt(run.get('rps_default'), 0)} vs off "
            f"{_fmt(run.get('rps_off'), 0)} req/s; server CPU per request: INFO "
            f"{_fmt(run.get('cpu_us_default'))} vs off {_fmt(run.get('cpu_us_off'))} us"
        )

    return Target(
        f"logging_{name}",
        f"request logging: {text} keeps >= {LOGGING_TARGET:.2f}x of its req/s"
        " without logs",
        "x",
        _float(f"logging_{name}.ratio"),
        lambda v: v >= LOGGING_TARGET,
        note=note,
    )


def _workers(name: str) -> Callable[[Scenarios], float | None]:
    """`--workers 2` against one process, same database and run."""

    def measure(s: Scenarios) -> float | None:
        return _ratio(s, f"workers2_{name}", f"workers1_{name}")

    return measure


def _workers_note(name: str) -> Callable[[Scenarios], str]:
    def note(s: Scenarios) -> str:
        one = _get(s, f"workers1_{name}.rps")
        two = _get(s, f"workers2_{name}.rps")
        floor = _x(_ratio(s, "workers2_floor_read", "floor_read"))
        return f"{_fmt(two, 0)} against {_fmt(one, 0)} req/s; Starlette floor {floor}"

    return note


TARGETS = [
    Target(
        "totals_rps",
        "campaignTotals >= 3,000 req/s",
        "req/s",
        _float("campaign_totals.rps"),
        lambda v: v >= 3000,
        lambda s: _ratio(s, "campaign_totals", "floor_read"),
    ),
    Target(
        "totals_p99_paced",
        "campaignTotals p99 < 20 ms at 1,000 req/s",
        "ms",
        _paced_p99("campaign_totals_paced"),
        lambda v: v < 20,
        note=_paced_note("campaign_totals_paced"),
    ),
    Target(
        "totals_uncached_vs_graphql",
        "campaignTotals (cache misses) >= 0.8x GraphQL `{ __typename }`",
        "x",
        lambda s: _ratio(s, "campaign_totals_uncached", "floor_graphql"),
        lambda v: v >= 0.8,
        note=lambda s: "same run; the cost of executing a known operation",
    ),
    Target(
        "pledge_rps",
        "createPledge >= 1,000 req/s, synchronous=FULL",
        "req/s",
        _float("create_pledge.rps"),
        lambda v: v >= 1000,
        lambda s: _ratio(s, "create_pledge", "floor_insert"),
    ),
    Target(
        "pledge_p99_paced",
        "createPledge p99 < 50 ms at 500 req/s",
        "ms",
        _paced_p99("create_pledge_paced"),
        lambda v: v < 50,
        note=_paced_note("create_pledge_paced"),
    ),
    Target(
        "webhooks_rps",
        "webhooks >= 1,000 req/s, with dedupe",
        "req/s",
        _float("webhooks.rps"),
        lambda v: v >= 1000,
        lambda s: _ratio(s, "webhooks", "floor_insert"),
    ),
    Target(
        "e2e_p50",
        "donation -> subscriber p50 < 20 ms",
        "ms",
        _float("donation_e2e.answer_to_push.p50_ms"),
        lambda v: v < 20,
    ),
    Target(
        "e2e_p99",
        "donation -> subscriber p99 < 100 ms",
        "ms",
        _float("donation_e2e.answer_to_push.p99_ms"),
        lambda v: v < 100,
    ),
    Target(
        "large_vs_small",
        "campaignTotals (cache misses), large vs 1k pledges: within 10%",
        "x",
        _large_vs_small,
        lambda v: v >= 0.9,
        note=lambda s: f"{_fmt(_get(s, 'campaign_totals_large.pledges'))} pledges",
    ),
    Target(
        "large_rss",
        "memory with the large database < 200 MB",
        "MB",
        _float("server_large.rss_mb"),
        lambda v: v < 200,
        note=lambda s: f"peak {_fmt(_get(s, 'server_large.peak_rss_mb'))} MB",
    ),
    Target(
        "viral_p99",
        "subscribers: capture -> receipt p99 < 1 s",
        "ms",
        _float("viral_page.capture_to_receipt.p99_ms"),
        lambda v: v < 1000,
        note=lambda s: f"{_fmt(_get(s, 'viral_page.subscribers'))} subscribers",
    ),
    Target(
        "viral_rss",
        "subscribers: server < 250 MB",
        "MB",
        _float("viral_page.peak_rss_mb"),
        lambda v: v < 250,
        note=lambda s: (
            f"peak RSS (VmHWM); {_fmt(_get(s, 'viral_page.subscribers'))}"
            f" subscribers, {_fmt(_get(s, 'viral_page.per_subscription_kb'))} KB"
            f" each over {_fmt(_get(s, 'viral_page.rss_idle_mb'))} MB idle"
        ),
    ),
    Target(
        "workers_totals",
        "2 workers: campaignTotals >= 1.5x one process",
        "x",
        _workers("campaign_totals"),
        lambda v: v >= 1.5,
        note=_workers_note("campaign_totals"),
    ),
    Target(
        "workers_totals_uncached",
        "2 workers: campaignTotals (cache misses) >= 1.5x one process",
        "x",
        _workers("campaign_totals_uncached"),
        lambda v: v >= 1.5,
        note=_workers_note("campaign_totals_uncached"),
    ),
    Target(
        "workers_pledges",
        "2 workers: createPledge no worse than one process (>= 1.0x)",
        "x",
        _workers("create_pledge"),
        lambda v: v >= 1.0,
        note=_workers_note("create_pledge"),
    ),
    Target(
        "workers_e2e_p50",
        "2 workers: donation -> subscriber p50 < 50 ms",
        "ms",
        _float("workers2_donation_e2e.answer_to_push.p50_ms"),
        lambda v: v < 50,
        note=lambda s: (
            "one process: "
            f"{_fmt(_get(s, 'workers1_donation_e2e.answer_to_push.p50_ms'))} ms; "
            "p99 "
            f"{_fmt(_get(s, 'workers2_donation_e2e.answer_to_push.p99_ms'))} ms"
        ),
    ),
    Target(
        "viral_slow",
        "a slow subscriber delays nobody (slowest other < 1 s)",
        "ms",
        _slowest_others,
        lambda v: v < 1000,
        note=lambda s: (
            f"{_fmt(_get(s, 'viral_page.slow_subscriber.unread_bytes'))} bytes unread"
            " by the slow one"
        ),
    ),
    _logging_target("campaign_totals", "campaignTotals"),
    _logging_target("campaign_totals_uncached", "campaignTotals (cache misses)"),
    _logging_target("create_pledge", "createPledge"),
]


# The phase that measures a target, by the first word of the target's key.
_PHASE_OF = {
    "totals": "main",
    "pledge": "main",
    "e2e": "main",
    "postgresql": "main",
    "webhooks": "webhooks",
    "large": "large",
    "viral": "viral",
    "workers": "workers",
    "logging": "logging",
    "stampede": "stampede",
}


def phase_of(target: Target) -> str:
    return _PHASE_OF[target.key.partition("_")[0]]


def evaluate(
    scenarios: Scenarios,
    *,
    verdicts: bool,
    more: list[Target] | None = None,
    phases: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Each target's figure and verdict; a target whose phase was left out of
    the run (`phases`: the phases run, None for all) is "not run", not missed."""
    out = []
    for target in TARGETS + (more or []):
        ran = phases is None or phase_of(target) in phases
        value = target.measure(scenarios) if ran else None
        if not ran:
            verdict = "not run"
        elif not verdicts:
            verdict = "n/a"
        elif value is None:
            verdict = "MISS"
        else:
            verdict = "PASS" if target.passes(value) else "MISS"
        out.append(
            {
                "target": target.key,
                "text": target.text,
                "value": None if value is None else round(value, 3),
                "unit": target.unit,
                "ratio_to_floor": _round(target.ratio(scenarios)) if ran else None,
                "note": target.note(scenarios) if ran else "",
                "verdict": verdict,
            }
        )
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def scenario_table(scenarios: Scenarios) -> str:
    lines = [
        "| scenario | req/s | p50 ms | p99 ms | x Starlette floor | x GraphQL floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, text, floor, vs_graphql in ROWS:
        run = scenarios.get(name)
        if not run:
            continue
        graphql = _ratio(scenarios, name, "floor_graphql") if vs_graphql else None
        text = text.replace("{pledges}", _fmt(run.get("pledges")))
        lines.append(
            f"| {text} | {_fmt(run.get('rps'), 0)} | {_fmt(run.get('p50_ms'), 2)} | "
            f"{_fmt(run.get('p99_ms'), 2)} | {_x(_ratio(scenarios, name, floor))} | "
            f"{_x(graphql)} |"
        )
    for name, text in (
        ("campaign_totals_paced", "campaignTotals at a fixed rate"),
        ("create_pledge_paced", "createPledge at a fixed rate"),
    ):
        run = scenarios.get(name)
        if run:
            lines.append(
                f"| {text} ({_fmt(run['rate'])}/s asked) | "
                f"{_fmt(run.get('achieved_rps'), 0)} | {_fmt(run.get('p50_ms'), 2)} | "
                f"{_fmt(run.get('p99_ms'), 2)} | - | - |"
            )
    e2e = scenarios.get("donation_e2e")
    if e2e and e2e["answer_to_push"].get("n"):
        lat = e2e["answer_to_push"]
        lines.append(
            f"| donation end to end: authorize answer -> push ({lat['n']}) | - | "
            f"{_fmt(lat['p50_ms'], 2)} | {_fmt(lat['p99_ms'], 2)} | - | - |"
        )
    viral = scenarios.get("viral_page")
    if viral and viral["capture_to_receipt"].get("n"):
        lat = viral["capture_to_receipt"]
        lines.append(
            f"| viral page: capture -> receipt, {_fmt(viral['subscribers'])} "
            f"subscribers x {viral['donations']} donations | - | "
            f"{_fmt(lat['p50_ms'], 2)} | {_fmt(lat['p99_ms'], 2)} | - | - |"
        )
    return "\n".join(lines)


def target_table(targets: list[dict[str, Any]]) -> str:
    lines = [
        "| target | measured | x floor | verdict | note |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for t in targets:
        if t["verdict"] == "not run":
            value = "-"
        elif t["value"] is None:
            value = "rate not held" if "req/s held" in t["note"] else "not measured"
        else:
            value = f"{_fmt(t['value'], 2)} {t['unit']}"
        lines.append(
            f"| {t['text']} | {value} | {_x(t['ratio_to_floor'])} | {t['verdict']} |"
            f" {t['note']} |"
        )
    return "\n".join(lines)


def memory_lines(scenarios: Scenarios) -> str:
    parts = []
    for name, text in (
        ("server_main", "main database"),
        ("server_large", "large database"),
        ("viral_page", "viral page"),
    ):
        run = scenarios.get(name)
        if run:
            parts.append(
                f"{text}: RSS {_fmt(run.get('rss_mb'))} MB, peak "
                f"{_fmt(run.get('peak_rss_mb'))} MB"
            )
    return "; ".join(parts)

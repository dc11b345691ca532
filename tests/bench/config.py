"""How much work each mode does: the full benchmark and the seconds-long smoke run."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Mode:
    name: str
    runs: int  # measured wrk runs per throughput scenario (the median is reported)
    duration: float  # seconds per measured run
    warmup: float  # seconds of unmeasured load before the runs (0: none)
    threads: int  # wrk threads
    connections: int  # wrk connections for throughput runs
    timeout: float  # wrk socket timeout, seconds
    paced_duration: float  # seconds of the fixed-rate runs
    paced_connections: int  # connections available to the fixed-rate runs
    totals_rate: int  # req/s of the fixed-rate campaignTotals run
    pledge_rate: int  # req/s of the fixed-rate createPledge run
    campaigns: int
    small_pledges: int  # captured pledges in the main database
    large_pledges: int  # captured pledges in the large database
    webhook_events: int  # signed events prepared for each webhook run
    token_pool: int  # anonymous sessions shared by the createPledge connections
    e2e_donations: int
    subscribers: int  # open campaignTotals subscriptions on the viral page
    subscriber_processes: int
    viral_donations: int
    viral_gap: float  # seconds between the viral page's donations
    slow_operations: int  # subscriptions on the one connection that never reads
    delivery_deadline: (
        float  # seconds a subscriber may take before it counts as missing
    )
    settle_timeout: float  # seconds to wait for the outbox to drain after writes
    profile_seconds: float  # py-spy seconds per profiled scenario (0: no profile)


FULL = Mode(
    name="full",
    runs=3,
    duration=5.0,
    warmup=2.0,
    threads=2,
    connections=32,
    timeout=5.0,
    paced_duration=10.0,
    paced_connections=64,
    totals_rate=1000,
    pledge_rate=500,
    campaigns=20,
    small_pledges=1_000,
    large_pledges=1_000_000,
    webhook_events=25_000,
    token_pool=64,
    e2e_donations=200,
    subscribers=5_000,
    subscriber_processes=4,
    viral_donations=10,
    viral_gap=1.0,
    slow_operations=50,
    delivery_deadline=30.0,
    settle_timeout=600.0,
    profile_seconds=5.0,
)

SMOKE = Mode(
    name="smoke",
    runs=1,
    duration=1.0,
    warmup=0.0,
    threads=2,
    connections=8,
    timeout=10.0,
    paced_duration=1.0,
    paced_connections=16,
    totals_rate=100,
    pledge_rate=50,
    campaigns=20,
    small_pledges=1_000,
    large_pledges=1_000,
    webhook_events=3_000,
    token_pool=8,
    e2e_donations=5,
    subscribers=50,
    subscriber_processes=2,
    viral_donations=3,
    viral_gap=0.2,
    slow_operations=5,
    delivery_deadline=30.0,
    settle_timeout=60.0,
    profile_seconds=0.0,
)


def mode_named(name: str, **changes: object) -> Mode:
    base = SMOKE if name == "smoke" else FULL
    given = {key: value for key, value in changes.items() if value is not None}
    return replace(base, **given)  # type: ignore[arg-type]

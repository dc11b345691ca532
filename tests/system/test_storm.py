"""A storm of provider events: duplicated, shuffled and delivered concurrently.

Whatever order the events land in, every pledge ends where the machine says
those events lead (in the order they were applied), each event id is applied
once, and each campaign's totals equal its CAPTURED pledges, never negative.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from starlette.testclient import TestClient

from careforall.db import Database
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.storm import (
    APPLIED_IN_ORDER_SQL,
    APPLIED_SQL,
    HISTORY_SQL,
    KINDS,
    OUTBOX_SQL,
    Answer,
    Delivery,
    check_answers,
    check_replayed,
    make_delivery,
    outcomes,
    replay,
    with_repeats,
)
from tests.helpers.waiting import wait_until

SEED = int(os.environ.get("CAREFORALL_STORM_SEED", "20240611"))
CAMPAIGNS = 3
PLEDGES = 60
THREADS = 8
KIND_WEIGHTS = (3, 4, 1, 1)


@dataclass
class Observed:
    """Totals seen while the storm was running."""

    samples: int = 0
    lowest_raised: int = 0
    lowest_count: int = 0
    errors: list[str] = field(default_factory=list)


def build_storm(
    rng: random.Random, pledges: list[dict[str, Any]]
) -> tuple[list[Delivery], int]:
    """Each pledge gets 1-5 events with their own ids; a third are sent twice."""
    events = [
        make_delivery(pledge, kind)
        for pledge in pledges
        for kind in rng.choices(KINDS, weights=KIND_WEIGHTS, k=rng.randint(1, 5))
    ]
    return with_repeats(rng, events), len(events)


def poster(client: TestClient) -> Callable[[Delivery], Answer]:
    def deliver(d: Delivery) -> Answer:
        response = f.post_webhook(client, d.body)
        return d.event_id, response.status_code, response.json()

    return deliver


def pending_outbox(db: Database) -> int:
    with db.engine.connect() as conn:
        count: int = conn.execute(
            text("SELECT COUNT(*) FROM outbox_events WHERE status = 'pending'")
        ).scalar_one()
    return count


def watch_totals(db: Database, stop: threading.Event, seen: Observed) -> None:
    while not stop.is_set():
        try:
            with db.engine.connect() as conn:
                row = conn.execute(
                    text(
                        "SELECT MIN(raised_cents), MIN(pledge_count) "
                        "FROM campaign_totals"
                    )
                ).one()
        except Exception as exc:  # recorded, so a failing watcher fails the test
            seen.errors.append(repr(exc))
            return
        seen.samples += 1
        seen.lowest_raised = min(seen.lowest_raised, row[0] or 0)
        seen.lowest_count = min(seen.lowest_count, row[1] or 0)
        stop.wait(0.005)


def test_shuffled_duplicated_concurrent_storm_converges(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    rng = random.Random(SEED)
    client = app_factory(auto_capture=False)
    gql = GQL(client)
    organiser = f.register(gql)
    campaigns = [f.campaign(gql, organiser.token)["id"] for _ in range(CAMPAIGNS)]
    donors = [f.anonymous(gql) for _ in range(4)]
    pledges = [
        f.pledge(
            gql,
            rng.choice(donors),
            rng.choice(campaigns),
            amount=rng.randint(100, 90_000),
        )
        for _ in range(PLEDGES)
    ]
    by_id = {p["id"]: p for p in pledges}
    deliveries, distinct = build_storm(rng, pledges)

    deliver = poster(client)
    stop, seen = threading.Event(), Observed()
    watcher = threading.Thread(target=watch_totals, args=(db, stop, seen), daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            answers = list(pool.map(deliver, deliveries))
        posted = time.monotonic()
        wait_until(lambda: pending_outbox(db) == 0, timeout=15)
        drained = time.monotonic()
    finally:
        stop.set()
        watcher.join(timeout=5)
    print(
        f"\nstorm: seed={SEED} campaigns={CAMPAIGNS} pledges={PLEDGES} "
        f"events={distinct} deliveries={len(deliveries)} threads={THREADS}; "
        f"posted in {posted - started:.2f}s, "
        f"outbox drained {drained - posted:.2f}s later; "
        f"{seen.samples} totals samples"
    )

    # Every delivery was acknowledged; each id was processed exactly once.
    check_answers(answers, deliveries)
    with db.engine.connect() as conn:
        in_order = not db.is_postgres
        applied = conn.execute(
            text(APPLIED_IN_ORDER_SQL if in_order else APPLIED_SQL)
        ).all()
        statuses: dict[str, str] = dict(
            conn.execute(text("SELECT id, status FROM pledges")).all()
        )
        history_rows = conn.execute(text(HISTORY_SQL)).all()
        outbox = conn.execute(text(OUTBOX_SQL)).all()
    # Each pledge where the machine takes its events, in the order applied.
    applied_order = check_replayed(
        applied, statuses, history_rows, outbox, deliveries, in_order=in_order
    )
    sent_order: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for d in dict.fromkeys(deliveries):  # first copy of each event, in send order
        sent_order[d.pledge_id].append((d.event_id, d.kind))
    order_dependent = 0
    for pledge_id in by_id:
        possible = outcomes(applied_order[pledge_id])
        if len(possible) == 1:
            # Nothing raced (no failed against captured): the order sent decides too.
            assert statuses[pledge_id] == replay(sent_order[pledge_id])[0], pledge_id
        else:
            order_dependent += 1
            assert statuses[pledge_id] in possible
    print(
        f"storm: {order_dependent} pledges had events whose order decides the outcome"
    )

    # Totals: the CAPTURED pledges of each campaign, never negative on the way.
    assert not seen.errors, seen.errors
    assert seen.samples > 0
    assert seen.lowest_raised >= 0 and seen.lowest_count >= 0
    captured_somewhere = 0
    for campaign_id in campaigns:
        captured = [
            p["amountCents"]
            for pid, p in by_id.items()
            if p["campaign"]["id"] == campaign_id and statuses[pid] == "CAPTURED"
        ]
        captured_somewhere += len(captured)
        assert f.totals(gql, campaign_id) == (sum(captured), len(captured)), campaign_id
    assert captured_somewhere > 0  # the storm exercised the totals at all


def test_one_event_delivered_many_times_at_once_applies_once(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    """Copies of one event released together: one applies, the rest are duplicates."""
    client = app_factory(auto_capture=False)
    gql = GQL(client)
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    donor = f.anonymous(gql)
    pledges = [f.pledge(gql, donor, campaign_id, amount=1000 + i) for i in range(6)]
    deliver = poster(client)
    copies = 8

    with ThreadPoolExecutor(max_workers=copies) as pool:
        for pledge in pledges:
            burst = make_delivery(pledge, "captured")
            gate = threading.Barrier(copies)

            def at_once(
                d: Delivery = burst, gate: threading.Barrier = gate
            ) -> dict[str, Any]:
                gate.wait(timeout=5)
                _, status, body = deliver(d)
                assert status == 200, body
                return body

            answers = list(pool.map(lambda _: at_once(), range(copies)))
            assert sorted(a["duplicate"] for a in answers) == [False] + [True] * (
                copies - 1
            )

    wait_until(lambda: pending_outbox(db) == 0)
    with db.engine.connect() as conn:
        steps = Counter(
            pid
            for (pid,) in conn.execute(
                text(
                    "SELECT pledge_id FROM pledge_transitions "
                    "WHERE source LIKE 'webhook:%'"
                )
            ).all()
        )
        recorded = conn.execute(
            text("SELECT COUNT(*) FROM webhook_events")
        ).scalar_one()
    assert steps == Counter(
        {p["id"]: 2 for p in pledges}
    )  # AUTHORIZED, CAPTURED once each
    assert recorded == len(pledges)
    amounts = [p["amountCents"] for p in pledges]
    assert f.totals(gql, campaign_id) == (sum(amounts), len(amounts))

"""A storm of provider events: duplicated, shuffled and delivered concurrently.

Whatever order the events land in, every pledge ends where the machine says
those events lead (in the order they were applied), each event id is applied
once, and each campaign's totals equal its CAPTURED pledges, never negative.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.states import PledgeStatus, advance
from tests import factories as f
from tests.conftest import GQL, wait_for

SEED = int(os.environ.get("CAREFORALL_STORM_SEED", "20240611"))
CAMPAIGNS = 3
PLEDGES = 60
THREADS = 8
KINDS = ("authorized", "captured", "failed", "refunded")
KIND_WEIGHTS = (3, 4, 1, 1)


@dataclass
class Plain:
    """Stands in for a pledge row when replaying events through the machine."""

    status: str = PledgeStatus.PENDING.value


@dataclass(frozen=True)
class Delivery:
    event_id: str
    kind: str
    pledge_id: str
    body: bytes


@dataclass
class Observed:
    """Totals seen while the storm was running."""

    samples: int = 0
    lowest_raised: int = 0
    lowest_count: int = 0
    errors: list[str] = field(default_factory=list)


def replay(events: Iterable[tuple[str, str]]) -> tuple[str, list[tuple[str, str, str]]]:
    """Final status and history steps of (event_id, kind) applied in this order."""
    row = Plain()
    steps: list[tuple[str, str, str]] = []
    for event_id, kind in events:
        for step in advance(
            row, PledgeStatus[kind.upper()], source=f"webhook:{event_id}", at=utcnow()
        ):
            steps.append((step.from_status.value, step.to_status.value, step.source))
    return row.status, steps


def outcomes(events: list[tuple[str, str]]) -> set[str]:
    """Every final status some order of these events could produce."""
    return {replay(order)[0] for order in itertools.permutations(events)}


def make_delivery(pledge: dict[str, Any], kind: str) -> Delivery:
    """A provider event for `pledge` with a fresh id."""
    body = f.provider_event(pledge, kind, event_id=f"evt_storm_{uuid.uuid4().hex}")
    return Delivery(body["id"], kind, pledge["id"], json.dumps(body).encode())


def build_storm(
    rng: random.Random, pledges: list[dict[str, Any]]
) -> tuple[list[Delivery], int]:
    """Each pledge gets 1-5 events with their own ids; a third are sent twice."""
    events = [
        make_delivery(pledge, kind)
        for pledge in pledges
        for kind in rng.choices(KINDS, weights=KIND_WEIGHTS, k=rng.randint(1, 5))
    ]
    repeats = rng.sample(events, len(events) // 3)
    deliveries = events + repeats
    rng.shuffle(deliveries)
    return deliveries, len(events)


def poster(client: TestClient) -> Callable[[Delivery], tuple[str, int, dict[str, Any]]]:
    def deliver(d: Delivery) -> tuple[str, int, dict[str, Any]]:
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
        wait_for(lambda: pending_outbox(db) == 0, timeout=15)
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
    assert Counter(status for _, status, _ in answers) == {200: len(deliveries)}
    fresh = Counter(
        eid
        for eid, _, body in answers
        if body == {"received": True, "duplicate": False}
    )
    dupes = Counter(
        eid for eid, _, body in answers if body == {"received": True, "duplicate": True}
    )
    assert len(fresh) == distinct and set(fresh.values()) == {1}
    assert sum(fresh.values()) + sum(dupes.values()) == len(deliveries)
    assert sum(dupes.values()) == len(deliveries) - distinct

    with db.engine.connect() as conn:
        applied = conn.execute(
            text("SELECT event_id, type, pledge_id FROM webhook_events ORDER BY rowid")
        ).all()
        statuses: dict[str, str] = dict(
            conn.execute(text("SELECT id, status FROM pledges")).all()
        )
        history_rows = conn.execute(
            text(
                "SELECT pledge_id, from_status, to_status, source "
                "FROM pledge_transitions WHERE from_status IS NOT NULL ORDER BY id"
            )
        ).all()
        outbox = conn.execute(
            text("SELECT name, status, payload FROM outbox_events ORDER BY id")
        ).all()

    # Each event id recorded once, and only the ones sent.
    assert len(applied) == distinct
    assert {eid for eid, _, _ in applied} == {d.event_id for d in deliveries}

    # Writes are serialized, so webhook_events' rowid order is the order the
    # events were applied in; replaying that order through the machine must
    # give each pledge's status and its exact history.
    applied_order: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for event_id, kind, pledge_id in applied:
        applied_order[pledge_id].append((event_id, kind.removeprefix("payment.")))
    history: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for pledge_id, from_status, to_status, source in history_rows:
        history[pledge_id].append((from_status, to_status, source))
    sent_order: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for d in dict.fromkeys(deliveries):  # first copy of each event, in send order
        sent_order[d.pledge_id].append((d.event_id, d.kind))
    order_dependent = 0
    for pledge_id in by_id:
        events = applied_order[pledge_id]
        status, steps = replay(events)
        possible = outcomes(events)
        assert statuses[pledge_id] == status, (pledge_id, events)
        assert history[pledge_id] == steps, (pledge_id, events)
        if len(possible) == 1:
            # Nothing raced (no failed against captured): the order sent decides too.
            assert statuses[pledge_id] == replay(sent_order[pledge_id])[0], pledge_id
        else:
            order_dependent += 1
            assert statuses[pledge_id] in possible
    print(
        f"storm: {order_dependent} pledges had events whose order decides the outcome"
    )

    # Every step has its outbox event, and every outbox event was delivered.
    assert {status for _, status, _ in outbox} == {"done"}
    changes = Counter(
        json.loads(payload)["pledge_id"]
        for name, _, payload in outbox
        if name == "PledgeStatusChanged"
    )
    assert changes == Counter(
        {pid: len(steps) for pid, steps in history.items() if steps}
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

    wait_for(lambda: pending_outbox(db) == 0)
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

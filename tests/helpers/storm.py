"""Storms of provider events: build them, and check what the server made of them.

The rows the checks read are plain tuples, so they serve both the app in the
test process (SQLAlchemy) and a real server's file (sqlite3).
"""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from careforall.domain.clock import utcnow
from careforall.domain.states import PledgeStatus, advance
from tests import factories as f

KINDS = ("authorized", "captured", "failed", "refunded")

APPLIED_SQL = "SELECT event_id, type, pledge_id FROM webhook_events"
# SQLite: writes are serialized, so rowid order is the order events applied in.
APPLIED_IN_ORDER_SQL = f"{APPLIED_SQL} ORDER BY rowid"
HISTORY_SQL = (
    "SELECT pledge_id, from_status, to_status, source "
    "FROM pledge_transitions WHERE from_status IS NOT NULL ORDER BY id"
)
OUTBOX_SQL = "SELECT name, status, payload FROM outbox_events ORDER BY id"

Step = tuple[str, str, str]  # from status, to status, source


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


def replay(events: Iterable[tuple[str, str]]) -> tuple[str, list[Step]]:
    """Final status and history steps of (event_id, kind) applied in this order."""
    row = Plain()
    steps: list[Step] = []
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


def with_repeats(rng: random.Random, events: list[Delivery]) -> list[Delivery]:
    """The events plus a third of them again (same id, same body), shuffled."""
    deliveries = events + rng.sample(events, len(events) // 3)
    rng.shuffle(deliveries)
    return deliveries


Answer = tuple[str, int, dict[str, Any]]  # event id, HTTP status, JSON body


def check_answers(answers: Sequence[Answer], deliveries: Sequence[Delivery]) -> int:
    """Every delivery got a 200; each event id was news exactly once, and every
    other copy was answered as a duplicate. Returns how many were duplicates."""
    distinct = len({d.event_id for d in deliveries})
    assert Counter(status for _, status, _ in answers) == {200: len(deliveries)}
    fresh = Counter(
        eid
        for eid, _, body in answers
        if body == {"received": True, "duplicate": False}
    )
    dupes = sum(body == {"received": True, "duplicate": True} for _, _, body in answers)
    assert len(fresh) == distinct and set(fresh.values()) == {1}
    assert dupes == len(deliveries) - distinct
    return dupes


def check_replayed(
    applied: Sequence[tuple[Any, ...]],
    statuses: dict[str, str],
    history_rows: Sequence[tuple[Any, ...]],
    outbox_rows: Sequence[tuple[Any, ...]],
    deliveries: Sequence[Delivery],
    *,
    in_order: bool,
) -> dict[str, list[tuple[str, str]]]:
    """Each event id was recorded once, and each pledge's status and history are
    what the machine makes of its events in the order they were applied.

    `in_order`: `applied` is in the order the events applied in
    (APPLIED_IN_ORDER_SQL, SQLite); otherwise (PostgreSQL, concurrent writers)
    that order is unknown and the history must be the replay of some order.
    Every history step has its outbox event, all delivered. Returns each
    pledge's events (in applied order when known).
    """
    assert len(applied) == len({d.event_id for d in deliveries})
    assert {eid for eid, _, _ in applied} == {d.event_id for d in deliveries}
    applied_order: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for event_id, kind, pledge_id in applied:
        applied_order[pledge_id].append((event_id, kind.removeprefix("payment.")))
    history: dict[str, list[Step]] = defaultdict(list)
    for pledge_id, from_status, to_status, source in history_rows:
        history[pledge_id].append((from_status, to_status, source))
    for pledge_id in {d.pledge_id for d in deliveries}:
        events = applied_order[pledge_id]
        orders = [events] if in_order else itertools.permutations(events)
        replays = [replay(order) for order in orders]
        assert (statuses[pledge_id], history[pledge_id]) in replays, (
            pledge_id,
            events,
            statuses[pledge_id],
            history[pledge_id],
        )

    assert {status for _, status, _ in outbox_rows} == {"done"}
    changes = Counter(
        json.loads(payload)["pledge_id"]
        for name, _, payload in outbox_rows
        if name == "PledgeStatusChanged"
    )
    assert changes == Counter(
        {pid: len(steps) for pid, steps in history.items() if steps}
    )
    return applied_order

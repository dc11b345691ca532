"""A side effect (auto-capture, which calls the payment provider) that keeps
failing for one event: the other events flow on, that one is retried with
growing waits, parked as a dead letter, and replaying it through the admin
API once the provider is back captures the pledge exactly once; a dead letter
whose effect came about another way meanwhile replays as a no-op.

(tests/outbox/test_dispatcher.py does the same for a transactional handler,
the totals, and tests/api/test_admin.py lists and replays dead letters.)
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.models import OutboxEvent, PledgeTransition, SimPayment
from careforall.payments.provider import ProviderResult
from careforall.payments.simulated import SimulatedProvider
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.outbox import settled
from tests.helpers.waiting import wait_until

BASE_DELAY = 0.25  # seconds before the first retry; each next one waits twice
ATTEMPTS = 3
REPLAY = "mutation($id: ID!) { replayDeadLetter(id: $id) }"
REPLAY_ALL = "mutation { replayAllDeadLetters }"


@dataclass
class Try:
    """One call of the provider's capture for the faulty pledge."""

    attempts_before: int  # the outbox row's attempts when it was made
    due: datetime  # the row's available_at then
    at: datetime


@dataclass
class ProviderDown:
    """The provider's capture fails for one pledge while `on`."""

    pledge_id: str = ""
    on: bool = True
    tries: list[Try] = field(default_factory=list)
    captures: list[str] = field(default_factory=list)  # pledges it captured


@pytest.fixture
def provider_down(
    monkeypatch: pytest.MonkeyPatch, db: Database
) -> Iterator[ProviderDown]:
    fault = ProviderDown()
    real_capture = SimulatedProvider.capture

    def capture(self: SimulatedProvider, *, pledge_id: str) -> ProviderResult:
        if fault.on and pledge_id == fault.pledge_id:
            row = authorized_event(db, pledge_id)
            fault.tries.append(Try(row.attempts, row.available_at, utcnow()))
            raise ConnectionError("payment provider unreachable")
        result = real_capture(self, pledge_id=pledge_id)
        fault.captures.append(pledge_id)
        return result

    monkeypatch.setattr(SimulatedProvider, "capture", capture)
    monkeypatch.setattr(random, "uniform", lambda a, b: 1.0)  # no jitter
    yield fault


def authorized_event(db: Database, pledge_id: str) -> OutboxEvent:
    """The pledge's PENDING -> AUTHORIZED outbox event (auto-capture's trigger)."""
    (row,) = [
        row
        for row in changes(db, pledge_id)
        if json.loads(row.payload)["to_status"] == "AUTHORIZED"
    ]
    return row


def changes(db: Database, pledge_id: str) -> list[OutboxEvent]:
    with db.read() as session:
        rows = session.exec(
            select(OutboxEvent)
            .where(OutboxEvent.name == "PledgeStatusChanged")
            .order_by(col(OutboxEvent.id))
        ).all()
    return [r for r in rows if json.loads(r.payload)["pledge_id"] == pledge_id]


def steps(db: Database, pledge_id: str) -> list[tuple[str | None, str, str, datetime]]:
    with db.read() as session:
        rows = session.exec(
            select(PledgeTransition)
            .where(PledgeTransition.pledge_id == pledge_id)
            .order_by(col(PledgeTransition.id))
        ).all()
    return [(r.from_status, r.to_status, r.source, r.at) for r in rows]


class Donations:
    """An auto-capturing app with an admin, a campaign and a donor."""

    def __init__(self, client: TestClient) -> None:
        self.gql = GQL(client)
        self.admin = f.admin(self.gql).token
        organiser = f.register(self.gql)
        self.campaign_id: str = f.campaign(self.gql, organiser.token)["id"]
        self.donor = f.anonymous(self.gql)

    def pledge(self, amount: int) -> dict[str, Any]:
        return f.pledge(self.gql, self.donor, self.campaign_id, amount=amount)

    def pay(self, pledge: dict[str, Any]) -> None:
        paid = self.gql.ok(
            f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, self.donor
        )
        assert paid["authorizePayment"]["status"] in ("AUTHORIZED", "CAPTURED")

    def status(self, pledge: dict[str, Any]) -> str:
        seen = self.gql.ok(f.PLEDGE, {"id": pledge["id"]}, self.donor)["pledge"]
        status: str = seen["status"]
        return status

    def totals(self) -> tuple[int, int]:
        return f.totals(self.gql, self.campaign_id)

    def replay(self, row: OutboxEvent) -> int:
        replayed: int = self.gql.ok(REPLAY, {"id": str(row.id)}, self.admin)[
            "replayDeadLetter"
        ]
        return replayed


@pytest.fixture
def donations(app_factory: Callable[..., TestClient]) -> Donations:
    return Donations(
        app_factory(outbox_max_attempts=ATTEMPTS, outbox_base_delay=BASE_DELAY)
    )


def park_one(
    donations: Donations, provider_down: ProviderDown, db: Database
) -> tuple[dict[str, Any], list[dict[str, Any]], OutboxEvent]:
    """Pay for a pledge whose capture keeps failing, and two more beside it;
    returns them once the faulty one's event is a dead letter."""
    bad = donations.pledge(1000)
    good = [donations.pledge(2000), donations.pledge(4000)]
    provider_down.pledge_id = bad["id"]
    donations.pay(bad)
    wait_until(lambda: len(provider_down.tries) == 1)
    for pledge in good:  # paid while the faulty one waits for its retries
        donations.pay(pledge)
    wait_until(lambda: authorized_event(db, bad["id"]).status == "dead", timeout=10)
    return bad, good, authorized_event(db, bad["id"])


def test_a_failing_capture_is_retried_parked_and_replayed_once(
    donations: Donations, provider_down: ProviderDown, db: Database
) -> None:
    bad, good, letter = park_one(donations, provider_down, db)

    # The others flowed on: captured while the faulty one was still retried.
    last_try = provider_down.tries[-1].at
    for pledge in good:
        (*_, (_, to_status, _, at)) = steps(db, pledge["id"])
        assert to_status == "CAPTURED" and at < last_try
    wait_until(lambda: donations.totals() == (6000, 2))

    # Tried ATTEMPTS times, each wait twice the last, then parked.
    assert [t.attempts_before for t in provider_down.tries] == [0, 1, 2]
    waits = [
        (later.due - earlier.at).total_seconds()
        for earlier, later in itertools.pairwise(provider_down.tries)
    ]
    assert waits[0] >= BASE_DELAY and waits[1] >= 2 * BASE_DELAY
    assert waits[1] > waits[0]
    assert (letter.status, letter.attempts, letter.processed_at) == ("dead", 3, None)
    assert letter.last_error and "payment provider unreachable" in letter.last_error
    assert donations.status(bad) == "AUTHORIZED"  # charged, not yet captured
    assert bad["id"] not in provider_down.captures

    # The provider is back; the replay captures the pledge, once.
    provider_down.on = False
    assert donations.replay(letter) == 1
    wait_until(lambda: donations.status(bad) == "CAPTURED")
    wait_until(lambda: settled(db))
    assert donations.replay(letter) == 0  # no longer dead
    assert donations.gql.ok(REPLAY_ALL, None, donations.admin) == {
        "replayAllDeadLetters": 0
    }
    assert provider_down.captures.count(bad["id"]) == 1
    assert [(a, b) for a, b, _, _ in steps(db, bad["id"])] == [
        (None, "PENDING"),
        ("PENDING", "AUTHORIZED"),
        ("AUTHORIZED", "CAPTURED"),
    ]
    assert [json.loads(r.payload)["to_status"] for r in changes(db, bad["id"])] == [
        "AUTHORIZED",
        "CAPTURED",
    ]
    assert {r.status for r in changes(db, bad["id"])} == {"done"}
    with db.read() as session:
        payment = session.exec(
            select(SimPayment).where(SimPayment.pledge_id == bad["id"])
        ).one()
    assert payment.status == "captured"
    assert donations.totals() == (7000, 3)
    print(
        f"\ndead letters: 1 parked after {len(provider_down.tries)} tries "
        f"(waits {', '.join(f'{w:.2f}s' for w in waits)}), "
        f"{len(good)} other pledges captured meanwhile, 1 replayed: captured once"
    )


def test_a_dead_letter_whose_effect_came_another_way_replays_as_a_no_op(
    donations: Donations, provider_down: ProviderDown, db: Database
) -> None:
    bad, _, letter = park_one(donations, provider_down, db)
    provider_down.on = False
    # An admin captured it by hand meanwhile.
    donations.gql.ok(f.CAPTURE, {"id": bad["id"]}, donations.admin)
    assert donations.status(bad) == "CAPTURED"

    assert donations.replay(letter) == 1
    wait_until(lambda: authorized_event(db, bad["id"]).status == "done")
    wait_until(lambda: settled(db))
    assert provider_down.captures.count(bad["id"]) == 1  # the admin's only
    assert [(a, b) for a, b, _, _ in steps(db, bad["id"])] == [
        (None, "PENDING"),
        ("PENDING", "AUTHORIZED"),
        ("AUTHORIZED", "CAPTURED"),
    ]
    # The admin's capture, or the provider's webhook for it when that was
    # applied first: either way, the replay added no step of its own.
    source = steps(db, bad["id"])[-1][2]
    assert source == "admin" or source.startswith("webhook:"), source
    assert donations.totals() == (7000, 3)

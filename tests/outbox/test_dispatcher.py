"""The outbox: events written in the commit of their change, delivered promptly,
at least once with an exactly-once effect, retried with backoff, parked when
they keep failing, and never holding up the others."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlmodel import col, select
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.events import (
    EVENT_TYPES,
    Event,
    PledgeCreated,
    PledgeStatusChanged,
)
from careforall.models import OutboxEvent, Pledge, PledgeTransition, WebhookEvent
from careforall.outbox import dispatcher as dispatcher_module
from careforall.outbox import handlers
from careforall.services.payments import ProviderEvent, apply_provider_event
from careforall.services.transitions import write_history
from careforall.services.unit_of_work import UnitOfWork
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.outbox import outbox_drained
from tests.helpers.waiting import wait_until

# --- helpers ---------------------------------------------------------------


def webhook(client: TestClient, pledge: dict[str, Any], kind: str) -> str:
    """Deliver a signed provider event for `pledge`; returns its id."""
    body = f.provider_event(pledge, kind)
    response = f.post_webhook(client, body)
    assert response.json() == {"received": True, "duplicate": False}, response.text
    event_id: str = body["id"]
    return event_id


def outbox(db: Database, name: str | None = None) -> list[OutboxEvent]:
    with db.read() as session:
        query = select(OutboxEvent).order_by(col(OutboxEvent.id))
        if name is not None:
            query = query.where(OutboxEvent.name == name)
        return list(session.exec(query).all())


def changes_of(
    db: Database, pledge_id: str
) -> list[tuple[OutboxEvent, dict[str, Any]]]:
    """The pledge's PledgeStatusChanged rows with their payloads, in id order."""
    rows = [(row, json.loads(row.payload)) for row in outbox(db, "PledgeStatusChanged")]
    return [
        (row, payload) for row, payload in rows if payload["pledge_id"] == pledge_id
    ]


def history_of(db: Database, pledge_id: str) -> list[tuple[str | None, str, str]]:
    with db.read() as session:
        rows = session.exec(
            select(PledgeTransition)
            .where(PledgeTransition.pledge_id == pledge_id)
            .order_by(col(PledgeTransition.id))
        ).all()
    return [(r.from_status, r.to_status, r.source) for r in rows]


def status_of(db: Database, pledge_id: str) -> str:
    with db.read() as session:
        pledge = session.get(Pledge, pledge_id)
        assert pledge is not None
        return pledge.status


def webhook_events(db: Database) -> int:
    with db.read() as session:
        return len(session.exec(select(WebhookEvent)).all())


def pending(db: Database) -> int:
    return sum(row.status == "pending" for row in outbox(db))


def execute(db: Database, sql: str, **params: Any) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(sql), params)


def wake(client: TestClient) -> None:
    """What a commit through the unit of work does; raw SQL in a test does not."""
    client.app.state.dispatcher.wake()  # type: ignore[attr-defined]


class Scene:
    """An app, an organiser's campaign and a donor."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.gql = GQL(client)
        self.organiser = f.register(self.gql)
        self.campaign_id: str = f.campaign(self.gql, self.organiser.token)["id"]
        self.donor = f.anonymous(self.gql)

    def pledge(self, amount: int) -> dict[str, Any]:
        return f.pledge(self.gql, self.donor, self.campaign_id, amount=amount)

    def totals(self) -> tuple[int, int]:
        return f.totals(self.gql, self.campaign_id)


# --- written in the same commit ------------------------------------------


def test_every_state_change_writes_its_outbox_event_in_the_same_commit(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    scene = Scene(app_factory(auto_capture=False))
    admin = f.admin(scene.gql)
    created_before = len(outbox(db, "PledgeCreated"))

    pledge = scene.pledge(2500)

    # Read straight after the answer, no waiting: the row was in that commit.
    created = outbox(db, "PledgeCreated")
    assert len(created) == created_before + 1
    assert json.loads(created[-1].payload) == {
        "pledge_id": pledge["id"],
        "campaign_id": scene.campaign_id,
        "amount_cents": 2500,
        "currency": "USD",
    }
    assert changes_of(db, pledge["id"]) == []

    paid = scene.gql.ok(
        f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, scene.donor
    )
    assert paid["authorizePayment"]["status"] == "AUTHORIZED"
    assert [
        (p["from_status"], p["to_status"]) for _, p in changes_of(db, pledge["id"])
    ] == [("PENDING", "AUTHORIZED")]

    scene.gql.ok(f.CAPTURE, {"id": pledge["id"]}, admin.token)
    assert len(changes_of(db, pledge["id"])) == 2
    scene.gql.ok(f.REFUND, {"id": pledge["id"]}, admin.token)
    assert len(changes_of(db, pledge["id"])) == 3

    # A webhook that implies two steps writes two events. The provider's own
    # webhooks for the moves above race the API's answers; whichever lands
    # second writes nothing, so there is still one event per step.
    other = scene.pledge(700)
    webhook(scene.client, other, "captured")
    assert len(changes_of(db, other["id"])) == 2
    wait_until(lambda: pending(db) == 0)
    wait_until(lambda: webhook_events(db) == 4)  # 3 from the provider, 1 of ours

    for pledge_id in (pledge["id"], other["id"]):
        events = [
            (p["from_status"], p["to_status"], p["source"])
            for _, p in changes_of(db, pledge_id)
        ]
        assert events == history_of(db, pledge_id)[1:]  # one event per history step
    assert scene.totals() == (700, 1)


def test_a_change_that_does_not_commit_leaves_no_event(
    app_factory: Callable[..., TestClient],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The event and the change it reports share one transaction: both or neither."""
    scene = Scene(app_factory(auto_capture=False))
    pledge = scene.pledge(2500)
    outbox_before = len(outbox(db))

    def record_then_crash(*args: Any, **kwargs: Any) -> None:
        write_history(*args, **kwargs)
        raise RuntimeError("crash between the change and its commit")

    monkeypatch.setattr(
        "careforall.services.transitions.write_history", record_then_crash
    )
    event = ProviderEvent(
        id="evt_crash", type="payment.captured", pledge_id=pledge["id"],
        amount_cents=2500, currency="USD",
    )  # fmt: skip
    with pytest.raises(RuntimeError):
        apply_provider_event(UnitOfWork(db), event=event)

    assert len(outbox(db)) == outbox_before
    assert status_of(db, pledge["id"]) == "PENDING"
    assert history_of(db, pledge["id"]) == [(None, "PENDING", "api")]
    with db.read() as session:
        assert session.get(WebhookEvent, "evt_crash") is None


# --- delivered promptly ----------------------------------------------------


@dataclass
class Batches:
    started: int = 0
    running: int = 0


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Batches:
    """The dispatcher's batches, counted; with nothing due it would sleep a
    minute, so only the wake-up after a commit starts one in time."""
    monkeypatch.setattr(dispatcher_module, "IDLE_WAIT_SECONDS", 60.0)
    seen = Batches()
    process_due = dispatcher_module.Dispatcher.process_due

    def counted(self: dispatcher_module.Dispatcher) -> dispatcher_module.BatchResult:
        seen.started += 1
        seen.running += 1
        try:
            return process_due(self)
        finally:
            seen.running -= 1

    monkeypatch.setattr(dispatcher_module.Dispatcher, "process_due", counted)
    return seen


def test_dispatcher_wakes_on_commit_not_on_a_timer(
    app_factory: Callable[..., TestClient], db: Database, batches: Batches
) -> None:
    scene = Scene(app_factory(auto_capture=False))
    lags: list[float] = []
    raised = 0
    for amount in (1100, 2200, 3300, 4400, 5500):
        pledge = scene.pledge(amount)
        # Idle after the pledge's own events: all delivered, no batch running.
        wait_until(
            lambda: batches.running == 0 and outbox_drained(db),
            what="the dispatcher to deliver the pledge's events and go idle",
        )
        raised += amount
        count = len(lags) + 1
        started = time.monotonic()
        webhook(scene.client, pledge, "captured")
        wait_until(lambda: scene.totals() == (raised, count), timeout=3, interval=0.002)  # noqa: B023
        lags.append(time.monotonic() - started)
    print(
        f"\ncommit-to-totals lag: {', '.join(f'{lag * 1000:.0f} ms' for lag in lags)}"
    )
    assert max(lags) < 0.5


def test_an_event_nothing_reacts_to_is_written_delivered_and_wakes_no_batch(
    app_factory: Callable[..., TestClient], db: Database, batches: Batches
) -> None:
    scene = Scene(app_factory(auto_capture=False))
    wait_until(lambda: outbox_drained(db), what="the set-up's events delivered")
    time.sleep(0.2)
    batches_before = batches.started

    pledge = scene.pledge(2500)

    # Read straight after the answer: the row was written delivered.
    created = outbox(db, "PledgeCreated")[-1]
    assert json.loads(created.payload)["pledge_id"] == pledge["id"]
    assert (created.status, created.attempts) == ("done", 0)
    assert created.processed_at == created.created_at
    time.sleep(0.3)
    assert batches.started == batches_before, "a new pledge alone woke the dispatcher"

    # A change something reacts to still wakes it, and is delivered.
    webhook(scene.client, pledge, "captured")
    wait_until(lambda: scene.totals() == (2500, 1))
    assert batches.started > batches_before


def test_record_only_events_are_exactly_those_no_handler_takes() -> None:
    handled = (
        handlers.TRANSACTIONAL_HANDLERS.keys()
        | handlers.CONFIGURED_HANDLERS.keys()
        | handlers.SIDE_EFFECT_HANDLERS.keys()
    )
    kinds = set(EVENT_TYPES.values())
    assert {kind for kind in kinds if kind.record_only} == kinds - handled
    assert PledgeCreated.record_only
    with pytest.raises(TypeError, match="PledgeCreated is record-only"):
        handlers.refuse_record_only({PledgeCreated: [handlers.update_totals]})


# --- retries, dead letters, redelivery --------------------------------------


def test_a_failing_handler_is_retried_with_backoff_then_parked_without_blocking_others(
    app_factory: Callable[..., TestClient],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Long enough that the time between a failure and its recording (a commit
    # on a loaded machine) stays well below the doubling measured below.
    base = 0.1
    monkeypatch.setattr(random, "uniform", lambda a, b: 1.0)  # no jitter
    scene = Scene(
        app_factory(auto_capture=False, outbox_max_attempts=3, outbox_base_delay=base)
    )
    bad = scene.pledge(1000)  # its events come first in the outbox
    good = [scene.pledge(2000), scene.pledge(4000)]
    wait_until(lambda: pending(db) == 0)

    fault = {"on": True}
    # (to_status, attempts before the try) -> (available_at of the row, when
    # tried). A batch holding the bad event fails, and the event is then tried
    # alone: both calls belong to one try.
    calls: dict[tuple[str, int], tuple[datetime, datetime]] = {}
    real_update_totals = handlers.update_totals

    def flaky_update_totals(
        conn: Connection, events: Sequence[Event]
    ) -> Mapping[str, int]:
        for event in handlers.status_changes(events):
            if fault["on"] and event.pledge_id == bad["id"]:
                row = conn.execute(
                    select(OutboxEvent.attempts, OutboxEvent.available_at).where(
                        OutboxEvent.payload == event.to_json()
                    )
                ).one()
                calls.setdefault(
                    (event.to_status, row.attempts), (row.available_at, utcnow())
                )
                raise RuntimeError(f"totals store unavailable for {event.pledge_id}")
        return real_update_totals(conn, events)

    monkeypatch.setitem(
        handlers.TRANSACTIONAL_HANDLERS, PledgeStatusChanged, [flaky_update_totals]
    )
    for pledge in (bad, *good):
        webhook(scene.client, pledge, "captured")

    # The others are not held up by the failing one.
    wait_until(lambda: scene.totals() == (6000, 2))
    wait_until(lambda: all(r.status == "dead" for r, _ in changes_of(db, bad["id"])))
    parked = changes_of(db, bad["id"])
    assert [p["to_status"] for _, p in parked] == ["AUTHORIZED", "CAPTURED"]
    for row, _ in parked:
        assert (row.status, row.attempts, row.processed_at) == ("dead", 3, None)
        assert row.last_error and "totals store unavailable" in row.last_error
    for pledge in good:
        assert {r.status for r, _ in changes_of(db, pledge["id"])} == {"done"}

    # Three tries each, then no more; each retry waited twice as long as the last.
    for to_status in ("AUTHORIZED", "CAPTURED"):
        tries = [(key[1], *when) for key, when in calls.items() if key[0] == to_status]
        assert [attempts for attempts, _, _ in tries] == [0, 1, 2]
        (_, _, t0), (_, due1, t1), (_, due2, _) = tries
        first_wait = (due1 - t0).total_seconds()
        second_wait = (due2 - t1).total_seconds()
        assert t0 < due1 <= t1 < due2
        assert first_wait >= base and second_wait >= 2 * base
        assert second_wait > first_wait
    # A later batch passes the dead letters by.
    scene.pledge(500)
    wait_until(lambda: pending(db) == 0)
    assert len(calls) == 6
    assert scene.totals() == (6000, 2)

    # Fix the fault, put the dead letters back (the admin replay API comes
    # later): their effect is applied exactly once.
    fault["on"] = False
    execute(
        db,
        "UPDATE outbox_events SET status = 'pending', attempts = 0 "
        "WHERE status = 'dead'",
    )
    wake(scene.client)
    wait_until(lambda: {r.status for r, _ in changes_of(db, bad["id"])} == {"done"})
    assert scene.totals() == (7000, 3)


def test_a_handler_failing_after_another_wrote_undoes_that_write_too(
    app_factory: Callable[..., TestClient],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event's handlers share one savepoint: when a later one fails, the
    totals the first one moved are put back, and the retry moves them once."""
    scene = Scene(
        app_factory(auto_capture=False, outbox_max_attempts=2, outbox_base_delay=0.01)
    )
    bad = scene.pledge(1000)
    good = scene.pledge(2000)
    wait_until(lambda: pending(db) == 0)
    fault = {"on": True}
    moved: list[str] = []  # pledges whose totals update_totals moved

    def counting_update_totals(
        conn: Connection, events: Sequence[Event]
    ) -> Mapping[str, int]:
        changed = handlers.update_totals(conn, events)
        changes = handlers.status_changes(events)
        moved.extend(changes[position].pledge_id for position in changed.values())
        return changed

    def failing_after_the_totals(
        conn: Connection, events: Sequence[Event]
    ) -> Mapping[str, int]:
        changes = handlers.status_changes(events)
        if fault["on"] and bad["id"] in {c.pledge_id for c in changes}:
            raise RuntimeError("notifications unavailable")
        return {}

    monkeypatch.setitem(
        handlers.TRANSACTIONAL_HANDLERS,
        PledgeStatusChanged,
        [counting_update_totals, failing_after_the_totals],
    )
    for pledge in (bad, good):
        webhook(scene.client, pledge, "captured")
    wait_until(lambda: all(r.status == "dead" for r, _ in changes_of(db, bad["id"])))
    wait_until(lambda: pending(db) == 0)
    # update_totals moved the bad pledge's totals at every try, and each time
    # the failure after it undid that.
    assert moved.count(bad["id"]) >= 2
    assert scene.totals() == (2000, 1)
    with db.engine.connect() as conn:
        ledger = conn.execute(
            text("SELECT count(*) FROM totals_ledger WHERE pledge_id = :p"),
            {"p": bad["id"]},
        ).scalar_one()
    assert ledger == 0

    fault["on"] = False
    execute(db, "UPDATE outbox_events SET status = 'pending' WHERE status = 'dead'")
    wake(scene.client)
    wait_until(lambda: {r.status for r, _ in changes_of(db, bad["id"])} == {"done"})
    assert scene.totals() == (3000, 2)


def test_redelivered_events_have_their_effect_once(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    scene = Scene(app_factory(auto_capture=False))
    kept, refunded = scene.pledge(1000), scene.pledge(2500)
    for pledge in (kept, refunded):
        webhook(scene.client, pledge, "captured")
    wait_until(lambda: scene.totals() == (3500, 2))
    webhook(scene.client, refunded, "refunded")
    wait_until(lambda: pending(db) == 0 and scene.totals() == (1000, 1))

    def redeliver(rows: list[OutboxEvent]) -> None:
        ids = ",".join(str(row.id) for row in rows)
        execute(
            db,
            "UPDATE outbox_events SET status = 'pending', processed_at = NULL "
            f"WHERE id IN ({ids})",
        )
        wake(scene.client)
        wait_until(
            lambda: all(
                r.status == "done" for r in outbox(db) if r.id in {x.id for x in rows}
            )
        )

    # The capture of a counted pledge, delivered a second time.
    capture = [r for r, p in changes_of(db, kept["id"]) if p["to_status"] == "CAPTURED"]
    assert len(capture) == 1
    redeliver(capture)
    assert scene.totals() == (1000, 1)

    # The capture of a pledge refunded since, delivered late: still not counted.
    late = [
        r for r, p in changes_of(db, refunded["id"]) if p["to_status"] == "CAPTURED"
    ]
    redeliver(late)
    assert scene.totals() == (1000, 1)

    # Everything again, in one batch.
    redeliver(outbox(db, "PledgeStatusChanged"))
    assert scene.totals() == (1000, 1)
    assert pending(db) == 0


def test_a_failing_side_effect_is_retried_and_the_pledge_is_captured(
    app_factory: Callable[..., TestClient],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scene = Scene(app_factory())  # auto-capture on
    calls: list[str] = []
    real_capture = handlers.capture_after_authorization

    def capture_fails_once(
        ctx: handlers.HandlerContext, events: Sequence[Event]
    ) -> Mapping[int, Exception]:
        for event in handlers.status_changes(events):
            if event.to_status == "AUTHORIZED":
                calls.append(event.pledge_id)
                if len(calls) == 1:
                    raise ConnectionError("provider timed out")
        return real_capture(ctx, events)

    monkeypatch.setitem(
        handlers.SIDE_EFFECT_HANDLERS, PledgeStatusChanged, [capture_fails_once]
    )
    pledge = scene.pledge(3300)

    paid = scene.gql.ok(
        f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, scene.donor
    )

    assert paid["authorizePayment"]["status"] in ("AUTHORIZED", "CAPTURED")
    wait_until(lambda: status_of(db, pledge["id"]) == "CAPTURED")
    wait_until(lambda: scene.totals() == (3300, 1))
    assert calls == [pledge["id"], pledge["id"]]
    (authorized, _), (captured, _) = changes_of(db, pledge["id"])
    assert (authorized.status, authorized.attempts) == ("done", 1)
    assert authorized.last_error and "provider timed out" in authorized.last_error
    assert [(a, b) for a, b, _ in history_of(db, pledge["id"])] == [
        (None, "PENDING"),
        ("PENDING", "AUTHORIZED"),
        ("AUTHORIZED", "CAPTURED"),
    ]
    # Whichever came first, the capture's answer or its webhook, made the step.
    assert history_of(db, pledge["id"])[-1][2].startswith(("auto-capture", "webhook:"))
    wait_until(lambda: pending(db) == 0)
    assert scene.totals() == (3300, 1)


def test_the_totals_notification_carries_each_campaign_and_its_trace() -> None:
    from careforall.db import _payload_parts
    from careforall.outbox.listener import parse_totals_payload

    parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    changes = {"cmp_1": parent, "cmp_2": None}
    payload = ",".join(f"{c}@{p}" if p else c for c, p in changes.items())
    assert parse_totals_payload(payload) == changes
    # A batch of many campaigns is sent in parts PostgreSQL accepts, and
    # the parts together name every campaign once.
    many = {f"cmp_{i:05d}": parent for i in range(400)}
    parts = _payload_parts(",".join(f"{c}@{p}" for c, p in many.items()))
    assert len(parts) > 1 and all(len(p.encode()) <= 7000 for p in parts)
    merged: dict[str, str | None] = {}
    for part in parts:
        merged |= parse_totals_payload(part)
    assert merged == many

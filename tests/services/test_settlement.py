"""The outbox delivers a batch of status changes together: what it settles and
who it tells are exactly what delivering them one by one would give, a failing
event holds up no other, and the statements do not grow with the batch."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY
from sqlalchemy import Connection, text
from sqlmodel import col, select

from careforall import tracing
from careforall.broadcaster import Broadcaster
from careforall.db import Database
from careforall.domain.events import Event, PledgeStatusChanged
from careforall.domain.rules import Principal
from careforall.models import Campaign, Notification, OutboxEvent, Pledge
from careforall.outbox import handlers
from careforall.outbox.dispatcher import Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.payments.provider import PaymentProvider, ProviderResult
from careforall.payments.simulated import SimulatedProvider
from careforall.services.totals import Move, Settlement, reconcile, settle_pledges
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from careforall.sqlite import TransactionLost
from tests.helpers.pledges import give, paid, provider_says
from tests.services.conftest import MakeCampaign, MakeUser, statements_sent, totals


def dispatcher(
    db: Database,
    settings: Settings,
    *,
    batch_size: int = 200,
    provider: PaymentProvider | None = None,
) -> Dispatcher:
    """Auto-capture only with a `provider` given."""
    return Dispatcher(
        HandlerContext(
            db=db,
            settings=settings.with_(auto_capture=provider is not None),
            provider=provider or SimulatedProvider(db),
        ),
        Broadcaster(),
        batch_size=batch_size,
    )


class FlakyProvider:
    """Captures every pledge but one, whose capture times out; counts calls."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.captures: Counter[str] = Counter()

    def authorize(self, **_: object) -> ProviderResult:
        raise AssertionError("not asked in these tests")

    def capture(self, *, pledge_id: str) -> ProviderResult:
        self.captures[pledge_id] += 1
        if pledge_id == self.failing:
            raise ConnectionError("provider timed out")
        return ProviderResult(approved=True)

    def refund(self, *, pledge_id: str) -> ProviderResult:
        raise AssertionError("not asked in these tests")


def fallbacks() -> float:
    return REGISTRY.get_sample_value("careforall_outbox_batch_fallbacks_total") or 0.0


def deliver(db: Database, settings: Settings, *, batch_size: int = 200) -> list[int]:
    """Run a dispatcher until nothing is due; the size of each batch."""
    batches = []
    outbox = dispatcher(db, settings, batch_size=batch_size)
    while processed := outbox.process_due().processed:
        batches.append(processed)
    return batches


def told(db: Database, campaign: Campaign) -> list[tuple[str, str | None, str, str]]:
    """(kind, recipient, title, body) of the campaign's notifications, with the
    campaign's own title made neutral so that two campaigns compare."""
    with db.read() as session:
        rows = session.exec(
            select(Notification)
            .where(col(Notification.campaign_id) == campaign.id)
            .order_by(col(Notification.kind), col(Notification.body))
        ).all()
    return [
        (
            n.kind,
            n.recipient_user_id or n.recipient_session_id,
            n.title.replace(campaign.title, "<campaign>"),
            n.body.replace(campaign.title, "<campaign>"),
        )
        for n in rows
    ]


def about(row: OutboxEvent) -> str | None:
    pledge_id = json.loads(row.payload).get("pledge_id")
    return str(pledge_id) if pledge_id is not None else None


def status_in(row: OutboxEvent) -> str | None:
    return json.loads(row.payload).get("to_status")  # type: ignore[no-any-return]


def redeliver_copy(db: Database, pledge_id: str, to_status: str) -> None:
    """A second pending copy of a pledge's status event (at-least-once)."""
    with db.read() as session:
        rows = session.exec(
            select(OutboxEvent).where(OutboxEvent.name == "PledgeStatusChanged")
        ).all()
    (original,) = [
        r for r in rows if about(r) == pledge_id and status_in(r) == to_status
    ]
    with UnitOfWork(db) as uow:
        uow.session.add(
            OutboxEvent(
                name=original.name,
                payload=original.payload,
                created_at=original.created_at,
                available_at=original.available_at,
            )
        )
        uow.commit()


def test_a_batch_settles_and_tells_what_one_by_one_delivery_would(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    organiser: Principal,
    make_campaign: MakeCampaign,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same story on two campaigns, delivered as one batch and one event at a
    time. The goal is reached in the middle of the batch and left again by a
    refund later in it: announced all the same, with the total of that moment."""
    donor = make_user(name="Dana Donor")
    outcomes = {}
    # With tracing on, events go one at a time even in a large batch.
    for mode, batch_size in (("batch", 200), ("one by one", 1), ("traced", 200)):
        if mode == "traced":
            tracing.use_provider(TracerProvider())
        campaign = make_campaign(organiser, goal_cents=5000)
        earlier = paid(db, donor, campaign, 2000)
        deliver(db, settings, batch_size=batch_size)
        assert totals(db, campaign.id) == (2000, 1)

        big, declined = give(db, donor, campaign, 3000), give(db, donor, campaign, 700)
        provider_says(db, big, "captured")  # PENDING -> AUTHORIZED -> CAPTURED
        provider_says(db, declined, "failed", reason="Card expired.")
        provider_says(db, earlier, "refunded")
        redeliver_copy(db, big, "CAPTURED")
        try:
            batches = deliver(db, settings, batch_size=batch_size)
        finally:
            tracing.use_provider(None)

        assert sum(batches) == 5  # 4 changes, 1 copy (creations are record-only)
        assert len(batches) == (1 if batch_size > 1 else 5)
        outcomes[mode] = (totals(db, campaign.id), told(db, campaign))

    assert outcomes["batch"] == outcomes["one by one"] == outcomes["traced"]
    # The batch went through whole, not event by event after a failure.
    assert not [r for r in caplog.records if "outbox batch failed" in r.message]
    (raised, count), notes = outcomes["batch"]
    assert (raised, count) == (3000, 1)
    kinds = sorted(kind for kind, *_ in notes)
    assert kinds == sorted(
        ["PAYMENT_CAPTURED"] * 2  # the earlier pledge and the big one
        + ["DONATION_RECEIVED"] * 2
        + ["PAYMENT_FAILED", "PAYMENT_REFUNDED", "GOAL_REACHED"]
    )
    (goal,) = [body for kind, _, _, body in notes if kind == "GOAL_REACHED"]
    assert "has raised 50.00 USD" in goal  # at that moment; 30.00 USD now


def test_a_batch_mixing_a_reconcile_and_captures_counts_each_once(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Reconcile repairs drifted totals while captures still wait in the outbox;
    one batch then holds its TotalsReconciled and their status changes."""
    donor = make_user()
    first, second = give(db, donor, campaign, 1500), give(db, donor, campaign, 2500)
    deliver(db, settings)
    provider_says(db, first, "captured")
    with db.engine.begin() as conn:  # drift, as a bug or a hand edit would leave
        conn.execute(
            text(
                "UPDATE campaign_totals SET raised_cents = 99, pledge_count = 9 "
                "WHERE campaign_id = :c"
            ),
            {"c": campaign.id},
        )
    (drift,) = reconcile(UnitOfWork(db))
    assert (drift.raised_cents, drift.pledge_count) == (1500, 1)
    provider_says(db, second, "captured")

    result = dispatcher(db, settings).process_due()

    assert result.processed == 5  # two changes each, and the reconcile
    assert totals(db, campaign.id) == (4000, 2)
    assert set(result.traces) == {campaign.id}  # pushed (PostgreSQL: announced)
    if not db.is_postgres:
        (pushed,) = result.changed_totals
        assert (pushed.raised_cents, pushed.pledge_count) == (4000, 2)
    with db.read() as session:
        kinds = session.exec(
            select(Notification.kind).where(
                col(Notification.campaign_id) == campaign.id
            )
        ).all()
    assert sorted(kinds) == ["DONATION_RECEIVED"] * 2 + ["PAYMENT_CAPTURED"] * 2
    assert not [r for r in caplog.records if "outbox batch failed" in r.message]


def test_settle_pledges_settles_a_pledge_at_its_first_change(
    db: Database, make_user: MakeUser, organiser: Principal, campaign: Campaign
) -> None:
    donor = make_user()
    first, second = give(db, donor, campaign, 1200), give(db, donor, campaign, 800)
    for pledge_id in (first, second):
        provider_says(db, pledge_id, "captured")
    with UnitOfWork(db) as uow:
        settlement = settle_pledges(
            uow.session.connection(), [first, first, second, first, "plg_unknown"]
        )
        uow.commit()
    assert settlement.moves == [
        Move(position=0, pledge_id=first, campaign_id=campaign.id, cents=1200, count=1),
        Move(position=2, pledge_id=second, campaign_id=campaign.id, cents=800, count=1),
    ]
    assert settlement.changed == {campaign.id: 2}
    assert totals(db, campaign.id) == (2000, 2)
    # The raised cents as of each change: the first's settle, then the second's.
    assert [settlement.raised_at(p, campaign.id, 2000) for p in range(4)] == [
        1200,
        1200,
        2000,
        2000,
    ]
    assert settlement.raised_at(0, "cmp_other", 500) == 500
    # Settled already: every change of theirs finds nothing to do.
    with UnitOfWork(db) as uow:
        again = settle_pledges(uow.session.connection(), [second, first])
        uow.commit()
    assert again == Settlement([])
    assert totals(db, campaign.id) == (2000, 2)


def test_a_failing_event_in_a_batch_holds_up_no_other(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    donor = make_user()
    bad, *good = [give(db, donor, campaign, cents) for cents in (1000, 2000, 4000)]
    deliver(db, settings, batch_size=200)
    for pledge_id in (bad, *good):
        provider_says(db, pledge_id, "captured")
    calls: list[int] = []

    def refusing_the_bad_one(
        conn: Connection, events: Sequence[Event]
    ) -> Mapping[str, int]:
        calls.append(len(events))
        if bad in {c.pledge_id for c in handlers.status_changes(events)}:
            raise RuntimeError("cannot settle this one")
        return handlers.update_totals(conn, events)

    monkeypatch.setitem(
        handlers.TRANSACTIONAL_HANDLERS, PledgeStatusChanged, [refusing_the_bad_one]
    )
    before = fallbacks()
    result = dispatcher(db, settings, batch_size=200).process_due()

    assert result.processed == 6
    assert fallbacks() == before + 1
    # The batch, then each event alone to find the failing ones.
    assert calls == [6, 1, 1, 1, 1, 1, 1]
    (fell_back,) = [
        r for r in caplog.records if r.message.startswith("outbox batch failed")
    ]
    assert getattr(fell_back, "events", None) == 6
    assert totals(db, campaign.id) == (6000, 2)
    with db.read() as session:
        rows = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))).all()
    states = {
        (r.status, r.attempts, r.last_error is not None)
        for r in rows
        if about(r) == bad and r.name == "PledgeStatusChanged"
    }
    assert states == {("pending", 1, True)}
    assert {r.status for r in rows if about(r) in good} == {"done"}


def test_a_failing_capture_in_a_batch_asks_the_provider_once_per_pledge(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    """Auto-capture's batch: the others are captured, the failing one is
    retried later, and no pledge's capture is asked for twice in one pass."""
    donor = make_user()
    bad, *good = [give(db, donor, campaign, cents) for cents in (1000, 2000, 4000)]
    for pledge_id in (bad, *good):
        provider_says(db, pledge_id, "authorized")
    provider = FlakyProvider(failing=bad)
    before = fallbacks()

    dispatcher(db, settings, provider=provider).process_due()

    assert provider.captures == {bad: 1, good[0]: 1, good[1]: 1}
    assert fallbacks() == before
    with db.read() as session:
        rows = session.exec(
            select(OutboxEvent).where(OutboxEvent.name == "PledgeStatusChanged")
        ).all()
        statuses = {
            pledge_id: session.get(Pledge, pledge_id).status  # type: ignore[union-attr]
            for pledge_id in (bad, *good)
        }
    assert statuses == {bad: "AUTHORIZED", good[0]: "CAPTURED", good[1]: "CAPTURED"}
    authorized = {about(r): r for r in rows if status_in(r) == "AUTHORIZED"}
    assert (authorized[bad].status, authorized[bad].attempts) == ("pending", 1)
    assert "provider timed out" in (authorized[bad].last_error or "")
    assert {authorized[g].status for g in good} == {"done"}


@pytest.mark.sqlite_only
def test_a_batch_whose_transaction_sqlite_ended_is_retried_whole(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a full disk SQLite may roll the whole transaction back. Going on
    event by event would then commit each event's writes on their own, out of
    the write lock: the batch is given up and retried whole instead."""
    donor = make_user()
    pledges = [give(db, donor, campaign, cents) for cents in (1000, 2000)]
    deliver(db, settings, batch_size=200)
    for pledge_id in pledges:
        provider_says(db, pledge_id, "captured")
    fault = {"on": True}

    def disk_full_once(conn: Connection, events: Sequence[Event]) -> Mapping[str, int]:
        if fault["on"]:
            fault["on"] = False
            driver = conn.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            driver.rollback()  # what SQLite does by itself after SQLITE_FULL
            raise RuntimeError("database or disk is full")
        return handlers.update_totals(conn, events)

    monkeypatch.setitem(
        handlers.TRANSACTIONAL_HANDLERS, PledgeStatusChanged, [disk_full_once]
    )
    with pytest.raises(TransactionLost):
        dispatcher(db, settings).process_due()

    assert totals(db, campaign.id) == (0, 0)
    with db.read() as session:
        rows = session.exec(
            select(OutboxEvent).where(OutboxEvent.name == "PledgeStatusChanged")
        ).all()
    assert {(r.status, r.attempts) for r in rows} == {("pending", 0)}
    assert dispatcher(db, settings).process_due().processed == 4
    assert totals(db, campaign.id) == (3000, 2)


@pytest.mark.sqlite_only
def test_a_batchs_statements_do_not_grow_with_its_events(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    make_campaign: MakeCampaign,
    organiser: Principal,
) -> None:
    """Delivering 5 and 40 captures costs the same statements (SQLite: this
    process's only dispatcher reads its batch outside the write lock)."""
    donor = make_user()
    counts = []
    for captures in (5, 40):
        campaign = make_campaign(organiser)
        pledges = [give(db, donor, campaign, 100 + n) for n in range(captures)]
        deliver(db, settings, batch_size=200)
        for pledge_id in pledges:
            provider_says(db, pledge_id, "captured")
        with statements_sent(db) as statements:
            result = dispatcher(db, settings, batch_size=200).process_due()
        assert result.processed == 2 * captures
        assert totals(db, campaign.id) == (
            sum(100 + n for n in range(captures)),
            captures,
        )
        counts.append(len(statements))
    assert counts[0] == counts[1], counts

"""Totals through the ledger: settling is idempotent and order-independent,
and reconcile repairs drifted totals without double counting later events."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text

from careforall.broadcaster import Broadcaster
from careforall.db import Database
from careforall.domain.rules import Principal
from careforall.models import Campaign
from careforall.outbox.dispatcher import Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.payments.simulated import SimulatedProvider
from careforall.services.payments import ProviderEvent, apply_provider_event
from careforall.services.pledges import PledgeData, create_pledge
from careforall.services.totals import Drift, reconcile, settle_pledges
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.services.conftest import MakeAnon, MakeCampaign, statements_sent, totals


def _pledge(db: Database, donor: Principal, campaign: Campaign, amount: int) -> str:
    data = PledgeData(
        campaign_id=campaign.id,
        amount_cents=amount,
        idempotency_key=f"k-{amount}-{campaign.id}",
    )
    return create_pledge(UnitOfWork(db), principal=donor, data=data).id


def _set_status(db: Database, pledge_id: str, status: str) -> None:
    """What a state change commits; the totals follow only when settled."""
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE pledges SET status = :s WHERE id = :p"),
            {"s": status, "p": pledge_id},
        )


def _settle(db: Database, pledge_id: str) -> str | None:
    """One delivery of a pledge's status event to the totals handler."""
    with UnitOfWork(db) as uow:
        changed = settle_pledges(uow.session.connection(), [pledge_id]).changed
        uow.commit()
    assert set(changed.values()) <= {0}
    return next(iter(changed), None)


def _truth(db: Database, campaign_id: str) -> tuple[int, int]:
    with db.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT COALESCE(SUM(amount_cents), 0), COUNT(*) FROM pledges "
                "WHERE campaign_id = :c AND status = 'CAPTURED'"
            ),
            {"c": campaign_id},
        ).one()
    return int(row[0]), int(row[1])


@pytest.fixture
def guest(make_anon: MakeAnon) -> Principal:
    return make_anon()[0]


# --- settle_pledges ------------------------------------------------------------


def test_settling_a_capture_counts_it_once(
    db: Database, campaign: Campaign, guest: Principal
) -> None:
    pledge_id = _pledge(db, guest, campaign, 2500)
    _set_status(db, pledge_id, "CAPTURED")

    assert _settle(db, pledge_id) == campaign.id
    assert _settle(db, pledge_id) is None  # a repeated event changes nothing
    assert totals(db, campaign.id) == (2500, 1)


def test_settling_a_refund_uncounts_it_once(
    db: Database, campaign: Campaign, guest: Principal
) -> None:
    kept, refunded = (
        _pledge(db, guest, campaign, 1000),
        _pledge(db, guest, campaign, 300),
    )
    for pledge_id in (kept, refunded):
        _set_status(db, pledge_id, "CAPTURED")
        _settle(db, pledge_id)
    assert totals(db, campaign.id) == (1300, 2)

    _set_status(db, refunded, "REFUNDED")
    assert _settle(db, refunded) == campaign.id
    assert _settle(db, refunded) is None
    assert totals(db, campaign.id) == (1000, 1)


@pytest.mark.parametrize("status", ["PENDING", "AUTHORIZED", "FAILED", "REFUNDED"])
def test_uncounted_statuses_change_nothing(
    status: str, db: Database, campaign: Campaign, guest: Principal
) -> None:
    pledge_id = _pledge(db, guest, campaign, 700)
    _set_status(db, pledge_id, status)
    assert _settle(db, pledge_id) is None
    assert totals(db, campaign.id) == (0, 0)


def test_settling_an_unknown_pledge_changes_nothing(db: Database) -> None:
    assert _settle(db, "plg_unknown") is None


def test_a_late_capture_event_after_the_refund_is_not_counted(
    db: Database, campaign: Campaign, guest: Principal
) -> None:
    """Captured and refunded before either event is handled: never counted,
    never negative, whatever order the two deliveries come in."""
    pledge_id = _pledge(db, guest, campaign, 5000)
    _set_status(db, pledge_id, "CAPTURED")
    _set_status(db, pledge_id, "REFUNDED")
    assert _settle(db, pledge_id) is None  # the "refunded" event
    assert _settle(db, pledge_id) is None  # the late "captured" event
    assert totals(db, campaign.id) == (0, 0)


def test_reordered_deliveries_converge_on_the_truth(
    db: Database, organiser: Principal, make_campaign: MakeCampaign, guest: Principal
) -> None:
    """Status changes happen in each pledge's order; their events reach the
    handler late, twice and shuffled. Totals never go negative and end equal to
    the CAPTURED pledges."""
    paths = [
        ["AUTHORIZED", "CAPTURED"],
        ["AUTHORIZED", "CAPTURED", "REFUNDED"],
        ["AUTHORIZED", "FAILED"],
        ["FAILED"],
        ["AUTHORIZED", "CAPTURED"],
        ["AUTHORIZED"],
        ["AUTHORIZED", "CAPTURED", "REFUNDED"],
    ]
    for seed in range(4):
        rng = random.Random(seed)
        campaigns = [make_campaign(organiser), make_campaign(organiser)]
        pledges: dict[str, list[str]] = {}
        expected = {c.id: (0, 0) for c in campaigns}
        for i, path in enumerate(paths):
            campaign = campaigns[i % 2]
            amount = 100 * (i + 1) + seed
            pledges[_pledge(db, guest, campaign, amount)] = list(path)
            if path[-1] == "CAPTURED":
                raised, count = expected[campaign.id]
                expected[campaign.id] = (raised + amount, count + 1)

        # interleave the pledges at random; each one's own steps stay in order
        schedule = [pid for pid, path in pledges.items() for _ in path]
        rng.shuffle(schedule)
        waiting: list[str] = []
        for pledge_id in schedule:
            _set_status(db, pledge_id, pledges[pledge_id].pop(0))
            waiting.append(pledge_id)
            rng.shuffle(waiting)
            for _ in range(rng.randint(0, len(waiting))):
                delivered = waiting.pop()
                for _ in range(rng.randint(1, 2)):
                    _settle(db, delivered)
                for c in campaigns:
                    raised, count = totals(db, c.id)
                    assert raised >= 0 and count >= 0
        for pledge_id in waiting + list(pledges):  # the rest, plus a duplicate each
            _settle(db, pledge_id)

        for c in campaigns:
            assert totals(db, c.id) == expected[c.id] == _truth(db, c.id)


# --- reconcile -----------------------------------------------------------------


def _captured(
    db: Database,
    donor: Principal,
    campaign: Campaign,
    amount: int,
    *,
    settle: bool = True,
) -> str:
    pledge_id = _pledge(db, donor, campaign, amount)
    _set_status(db, pledge_id, "CAPTURED")
    if settle:
        _settle(db, pledge_id)
    return pledge_id


def _corrupt(db: Database, campaign_id: str, raised: int, count: int) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE campaign_totals SET raised_cents = :r, pledge_count = :n "
                "WHERE campaign_id = :c"
            ),
            {"r": raised, "n": count, "c": campaign_id},
        )


def test_reconcile_reports_nothing_when_totals_are_right(
    db: Database,
    uow: UnitOfWork,
    organiser: Principal,
    make_campaign: MakeCampaign,
    guest: Principal,
) -> None:
    a, b = make_campaign(organiser), make_campaign(organiser)
    _captured(db, guest, a, 1000)
    refunded = _captured(db, guest, a, 200)
    _set_status(db, refunded, "REFUNDED")
    _settle(db, refunded)
    before = totals(db, a.id), totals(db, b.id)

    assert reconcile(uow) == []
    assert (totals(db, a.id), totals(db, b.id)) == before == ((1000, 1), (0, 0))


def test_reconcile_repairs_driftedtotals(
    db: Database,
    uow: UnitOfWork,
    organiser: Principal,
    make_campaign: MakeCampaign,
    guest: Principal,
) -> None:
    drifted, right, empty = (make_campaign(organiser) for _ in range(3))
    _captured(db, guest, drifted, 1500)
    _captured(db, guest, drifted, 500)
    _captured(db, guest, right, 300)
    _corrupt(db, drifted.id, 999_999, 7)
    _corrupt(db, empty.id, -50, -1)

    drifts = reconcile(uow)

    assert sorted(drifts, key=lambda d: d.campaign_id) == sorted(
        [
            Drift(
                campaign_id=drifted.id,
                raised_cents_was=999_999,
                pledge_count_was=7,
                raised_cents=2000,
                pledge_count=2,
            ),
            Drift(
                campaign_id=empty.id,
                raised_cents_was=-50,
                pledge_count_was=-1,
                raised_cents=0,
                pledge_count=0,
            ),
        ],
        key=lambda d: d.campaign_id,
    )
    assert totals(db, drifted.id) == (2000, 2)
    assert totals(db, right.id) == (300, 1)
    assert totals(db, empty.id) == (0, 0)
    assert reconcile(uow) == []


def test_events_still_waiting_after_reconcile_do_not_count_twice(
    db: Database, uow: UnitOfWork, campaign: Campaign, guest: Principal
) -> None:
    """Reconcile brings the ledger up to date too, so the handler's later run for
    the same changes settles to no change."""
    unsettled = _captured(db, guest, campaign, 4000, settle=False)
    counted_then_refunded = _captured(db, guest, campaign, 600)
    _set_status(db, counted_then_refunded, "REFUNDED")  # its event not handled yet
    assert totals(db, campaign.id) == (600, 1)

    (drift,) = reconcile(uow)
    assert (drift.raised_cents, drift.pledge_count) == (4000, 1)

    assert _settle(db, unsettled) is None
    assert _settle(db, counted_then_refunded) is None
    assert totals(db, campaign.id) == (4000, 1)
    assert reconcile(uow) == []


@pytest.mark.sqlite_only
def test_the_dispatcher_settles_a_batch_in_one_write_transaction(
    db: Database,
    settings: Settings,
    make_anon: MakeAnon,
    campaign: Campaign,
) -> None:
    """The totals it pushes are read inside that transaction: reading them
    after the commit took SQLite's write lock a second time per batch."""
    donor, _ = make_anon()
    pledge_id = _pledge(db, donor, campaign, 2500)
    captured = ProviderEvent(
        id="evt_one_transaction",
        type="payment.captured",
        pledge_id=pledge_id,
        amount_cents=2500,
        currency="USD",
    )
    apply_provider_event(UnitOfWork(db), event=captured)
    dispatcher = Dispatcher(
        HandlerContext(db=db, settings=settings, provider=SimulatedProvider(db)),
        Broadcaster(),
    )
    with statements_sent(db) as sent:
        result = dispatcher.process_due()
    # The organiser's verification mail, the pledge authorized and captured
    # (the campaign's and the pledge's creation are record-only).
    assert result.processed == 3
    assert len([s for s in sent if s.startswith("BEGIN IMMEDIATE")]) == 1
    (pushed,) = result.changed_totals
    assert (pushed.campaign_id, pushed.raised_cents, pushed.pledge_count) == (
        campaign.id,
        2500,
        1,
    )

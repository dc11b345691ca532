"""Recurring gifts: the first period at once, then one pledge per period as
time moves on; declines walk 1, 3 and 7 days to PAUSED; pause, resume,
cancel and changes only touch the periods to come."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import (
    BadUserInput,
    CampaignNotActive,
    Forbidden,
    IdempotencyKeyReused,
    InvalidTransition,
    NotFound,
    Unauthenticated,
)
from careforall.domain.events import RecurringDonationStopped
from careforall.domain.recurring import RecurringInterval
from careforall.domain.rules import Principal
from careforall.domain.states import CampaignStatus
from careforall.models import (
    Campaign,
    Mail,
    Notification,
    OutboxEvent,
    RecurringDonation,
    User,
)
from careforall.payments.simulated import CARD_DECLINED, CARD_OK, SimulatedProvider
from careforall.services import erasure, recurring, recurring_stats
from careforall.services.campaigns import set_campaign_status
from careforall.services.recurring_charges import run_due
from careforall.services.reviews import suspend_campaign
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.recurring import deliver, due, plan_charges, plan_row, start_plan
from tests.services.conftest import PASSWORD, MakeAnon, MakeUser


def _start(
    db: Database,
    donor: Principal,
    campaign: Campaign,
    *,
    card: str = CARD_OK,
    key: str = "plan-1",
    amount: int = 2_500,
    interval: RecurringInterval = RecurringInterval.MONTHLY,
) -> RecurringDonation:
    return start_plan(
        db,
        SimulatedProvider(db),
        donor,
        campaign,
        card=card,
        key=key,
        amount=amount,
        interval=interval,
    )


def _run(db: Database, now: datetime) -> None:
    run_due(db, provider=SimulatedProvider(db), now=now)


def _move_time(db: Database, start: datetime, end: datetime) -> None:
    """Run the scheduler once a day from `start` to `end`."""
    now = start
    while now <= end:
        _run(db, now)
        now += timedelta(days=1)


def test_the_first_period_is_charged_at_once_as_a_pledge(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    plan = _start(db, donor, campaign)
    assert plan.status == "ACTIVE"
    assert plan.period == 1
    assert plan.next_charge_at == due(plan, 1)
    [first] = plan_charges(db, plan.id)
    assert (first.status, first.amount_cents, first.currency) == (
        "AUTHORIZED",
        2_500,
        "USD",
    )
    assert first.donor_user_id == donor.id
    assert (first.recurring_period, first.recurring_attempt) == (0, 0)
    assert first.idempotency_key == f"recurring:{plan.id}:0"


def test_thirteen_months_give_twelve_charged_periods_after_the_first(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    plan = _start(db, make_user(), campaign)
    end = due(plan, 13)
    _move_time(db, plan.started_at, end - timedelta(seconds=1))
    charges = plan_charges(db, plan.id)
    periods = Counter(p.recurring_period for p in charges)
    print(
        f"\nperiods due 13 (the first and 12 after), charged {len(charges)}, "
        "duplicates "
        f"{sum(n - 1 for n in periods.values())}"
    )
    assert sorted(periods) == list(range(13))
    assert set(periods.values()) == {1}
    assert {p.status for p in charges} == {"AUTHORIZED"}
    assert plan_row(db, plan.id).period == 13


def test_a_run_long_after_charges_every_missed_period_once(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    plan = _start(
        db, make_user(), campaign, interval=RecurringInterval.WEEKLY, amount=700
    )
    later = plan.started_at + timedelta(weeks=5, hours=1)
    _run(db, later)
    _run(db, later)  # a second run finds nothing due
    charges = plan_charges(db, plan.id)
    assert [p.recurring_period for p in charges] == [0, 1, 2, 3, 4, 5]
    assert plan_row(db, plan.id).next_charge_at == plan.started_at + timedelta(weeks=6)


def test_declines_are_retried_after_1_3_and_7_days_then_the_plan_pauses(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    plan = _start(db, make_user(), campaign)
    due = plan.next_charge_at
    assert due is not None
    recurring.update_recurring_donation(
        UnitOfWork(db),
        provider=SimulatedProvider(db),
        principal=Principal(kind="user", id=plan.donor_user_id),
        plan_id=plan.id,
        payment_method=CARD_DECLINED,
    )
    now = due
    for delay in (1, 3, 7):
        _run(db, now)
        after = plan_row(db, plan.id)
        assert after.status == "ACTIVE"
        assert after.next_charge_at == now + timedelta(days=delay)
        _run(db, now + timedelta(days=delay) - timedelta(seconds=1))  # not yet
        now += timedelta(days=delay)
    _run(db, now)
    paused = plan_row(db, plan.id)
    assert (paused.status, paused.next_charge_at) == ("PAUSED", None)
    assert paused.failure_reason == "Your card was declined."
    tries = [p for p in plan_charges(db, plan.id) if p.recurring_period == 1]
    assert [(p.recurring_attempt, p.status) for p in tries] == [
        (0, "FAILED"),
        (1, "FAILED"),
        (2, "FAILED"),
        (3, "FAILED"),
    ]
    assert _stops(db) == [(plan.id, "PAUSED", "declined")]
    _run(db, now + timedelta(days=90))
    assert len(plan_charges(db, plan.id)) == 5  # paused: nothing more


def _stops(db: Database) -> list[tuple[str, str, str]]:
    with db.read() as session:
        rows = session.exec(
            select(OutboxEvent).where(OutboxEvent.name == RecurringDonationStopped.name)
        ).all()
    return [
        (p["plan_id"], p["status"], p["reason"])
        for p in (json.loads(r.payload) for r in rows)
    ]


def test_a_declined_first_period_leaves_the_plan_paused_and_resume_charges_it(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    plan = _start(db, donor, campaign, card=CARD_DECLINED)
    assert plan.status == "PAUSED"
    [failed] = plan_charges(db, plan.id)
    assert failed.status == "FAILED"
    uow = UnitOfWork(db)
    recurring.update_recurring_donation(
        uow,
        provider=SimulatedProvider(db),
        principal=donor,
        plan_id=plan.id,
        payment_method=CARD_OK,
    )
    resumed = recurring.resume_recurring_donation(
        UnitOfWork(db), principal=donor, plan_id=plan.id
    )
    assert resumed.status == "ACTIVE"
    assert resumed.next_charge_at is not None
    _run(db, resumed.next_charge_at)
    charges = plan_charges(db, plan.id)
    assert [(p.recurring_period, p.recurring_attempt, p.status) for p in charges] == [
        (0, 0, "FAILED"),
        (0, 1, "AUTHORIZED"),
    ]
    assert plan_row(db, plan.id).period == 1


def test_cancel_between_periods_stops_further_charges_and_keeps_past_ones(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    plan = _start(db, donor, campaign)
    second = due(plan, 1)
    _run(db, second)
    cancelled = recurring.cancel_recurring_donation(
        UnitOfWork(db), principal=donor, plan_id=plan.id
    )
    assert (cancelled.status, cancelled.next_charge_at) == ("CANCELLED", None)
    _run(db, second + timedelta(days=400))
    charges = plan_charges(db, plan.id)
    assert [(p.recurring_period, p.status) for p in charges] == [
        (0, "AUTHORIZED"),
        (1, "AUTHORIZED"),
    ]
    with pytest.raises(InvalidTransition):
        recurring.resume_recurring_donation(
            UnitOfWork(db), principal=donor, plan_id=plan.id
        )


def test_pause_skips_the_periods_it_covers_and_a_new_amount_applies_ahead(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    plan = _start(db, donor, campaign, interval=RecurringInterval.WEEKLY)
    recurring.pause_recurring_donation(UnitOfWork(db), principal=donor, plan_id=plan.id)
    _run(db, plan.started_at + timedelta(weeks=3))
    assert len(plan_charges(db, plan.id)) == 1
    recurring.update_recurring_donation(
        UnitOfWork(db),
        provider=SimulatedProvider(db),
        principal=donor,
        plan_id=plan.id,
        amount_cents=4_000,
    )
    resumed = recurring.resume_recurring_donation(
        UnitOfWork(db), principal=donor, plan_id=plan.id
    )
    # Resumed now (the real clock): the next period is the first still ahead.
    assert resumed.period == 1
    assert resumed.next_charge_at is not None
    _run(db, resumed.next_charge_at)
    amounts = [p.amount_cents for p in plan_charges(db, plan.id)]
    assert amounts == [2_500, 4_000]


def test_a_replayed_key_answers_with_the_plan_and_charges_nothing_more(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    plan = _start(db, donor, campaign)
    again = _start(db, donor, campaign)
    assert again.id == plan.id
    assert len(plan_charges(db, plan.id)) == 1
    with pytest.raises(IdempotencyKeyReused):
        _start(db, donor, campaign, amount=9_999)


def test_bad_plans_are_refused_and_nothing_is_stored(
    db: Database,
    make_user: MakeUser,
    make_anon: MakeAnon,
    make_campaign: object,
    campaign: Campaign,
) -> None:
    donor = make_user()
    anon, _ = make_anon()
    with pytest.raises(Unauthenticated):
        _start(db, anon, campaign)
    with pytest.raises(BadUserInput):
        _start(db, donor, campaign, card="pm_unknown")
    with pytest.raises(BadUserInput):
        _start(db, donor, campaign, amount=0)
    set_campaign_status(
        UnitOfWork(db),
        principal=Principal(kind="user", id=campaign.owner_id),
        campaign_id=campaign.id,
        status=CampaignStatus.PAUSED,
    )
    with pytest.raises(CampaignNotActive):
        _start(db, donor, campaign)
    with db.read() as session:
        assert session.exec(select(RecurringDonation)).all() == []


def test_only_the_donor_changes_a_plan_and_an_admin_may_cancel_it(
    db: Database, make_user: MakeUser, admin: Principal, campaign: Campaign
) -> None:
    donor, other = make_user(), make_user()
    plan = _start(db, donor, campaign)
    with pytest.raises(NotFound):
        recurring.cancel_recurring_donation(
            UnitOfWork(db), principal=other, plan_id=plan.id
        )
    with pytest.raises(Forbidden):
        recurring.pause_recurring_donation(
            UnitOfWork(db), principal=admin, plan_id=plan.id
        )
    with db.read() as session:
        assert recurring.my_recurring_donations(session, principal=other) == []
    done = recurring.cancel_recurring_donation(
        UnitOfWork(db), principal=admin, plan_id=plan.id
    )
    assert done.status == "CANCELLED"


def test_a_closed_campaign_ends_its_plans_and_tells_their_donors(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    plan = _start(db, make_user(), campaign)
    set_campaign_status(
        UnitOfWork(db),
        principal=Principal(kind="user", id=campaign.owner_id),
        campaign_id=campaign.id,
        status=CampaignStatus.CLOSED,
    )
    assert plan.next_charge_at is not None
    _run(db, plan.next_charge_at)
    ended = plan_row(db, plan.id)
    assert (ended.status, ended.next_charge_at) == ("CANCELLED", None)
    assert len(plan_charges(db, plan.id)) == 1
    assert _stops(db) == [(plan.id, "CANCELLED", "campaign_closed")]


def _told(db: Database, user_id: str) -> tuple[list[str], list[str]]:
    """The donor's notification kinds and the recurring mails' subjects."""
    with db.read() as session:
        kinds = session.exec(
            select(Notification.kind)
            .where(Notification.recipient_user_id == user_id)
            .where(col(Notification.kind).startswith("RECURRING"))
        ).all()
        subjects = session.exec(
            select(Mail.subject).where(Mail.kind == "recurring_stopped")
        ).all()
    return list(kinds), list(subjects)


def test_a_plan_paused_by_declines_tells_its_donor_once(
    db: Database, settings: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    plan = _start(db, donor, campaign, card=CARD_DECLINED)
    deliver(db, settings, SimulatedProvider(db))
    deliver(db, settings, SimulatedProvider(db))
    kinds, subjects = _told(db, donor.id)
    assert kinds == ["RECURRING_PAUSED"]
    assert subjects == ["Your recurring gift of $25.00 is paused"]
    assert plan_row(db, plan.id).status == "PAUSED"


def test_a_suspended_campaign_ends_its_plans_through_the_outbox(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    admin: Principal,
    campaign: Campaign,
) -> None:
    donor = make_user()
    plan = _start(db, donor, campaign)
    deliver(db, settings, SimulatedProvider(db))
    suspend_campaign(
        UnitOfWork(db), principal=admin, campaign_id=campaign.id, note="Checking."
    )
    deliver(db, settings, SimulatedProvider(db))
    ended = plan_row(db, plan.id)
    assert (ended.status, ended.next_charge_at) == ("CANCELLED", None)
    kinds, subjects = _told(db, donor.id)
    assert kinds == ["RECURRING_ENDED"]
    assert subjects == ["Your recurring gift of $25.00 has ended"]


def test_organisers_see_monthly_donors_and_admins_see_failing_plans(
    db: Database,
    make_user: MakeUser,
    admin: Principal,
    campaign: Campaign,
) -> None:
    owner = Principal(kind="user", id=campaign.owner_id)
    steady, weekly, failing = make_user(), make_user(), make_user()
    _start(db, steady, campaign, amount=1_000, key="a")
    _start(db, steady, campaign, amount=500, key="b")
    _start(db, weekly, campaign, amount=1_200, interval=RecurringInterval.WEEKLY)
    declined = _start(db, failing, campaign, card=CARD_DECLINED)
    with db.read() as session:
        figures = recurring_stats.monthly_giving(
            session, principal=owner, campaign_id=campaign.id
        )
        # 1,000 + 500 a month, and 1,200 a week at 52/12 weeks a month.
        assert (figures.donors, figures.active_plans) == (2, 3)
        assert figures.monthly_amount_cents == 1_500 + 5_200
        with pytest.raises(Forbidden):
            recurring_stats.monthly_giving(
                session, principal=steady, campaign_id=campaign.id
            )
        page = recurring_stats.failing_plans(
            session, principal=admin, first=10, after=None
        )
        assert [p.id for p in page.items] == [declined.id]
        with pytest.raises(Forbidden):
            recurring_stats.failing_plans(
                session, principal=owner, first=10, after=None
            )


def test_a_paused_campaign_skips_the_period_and_its_plans_go_on(
    db: Database, make_user: MakeUser, campaign: Campaign
) -> None:
    plan = _start(db, make_user(), campaign)
    owner = Principal(kind="user", id=campaign.owner_id)
    _set_status(db, owner, campaign, CampaignStatus.PAUSED)
    second = due(plan, 1)
    _run(db, second)
    _set_status(db, owner, campaign, CampaignStatus.ACTIVE)
    _run(db, due(plan, 2))
    after = plan_row(db, plan.id)
    assert (after.status, after.period) == ("ACTIVE", 3)
    assert [p.recurring_period for p in plan_charges(db, plan.id)] == [0, 2]


def _set_status(
    db: Database, owner: Principal, campaign: Campaign, status: CampaignStatus
) -> None:
    set_campaign_status(
        UnitOfWork(db), principal=owner, campaign_id=campaign.id, status=status
    )


def test_a_deleted_account_gives_nothing_more(
    db: Database, settings: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    plan = _start(db, donor, campaign)
    with db.write_session() as session:
        session.execute(
            update(User).where(col(User.id) == donor.id).values(erased_at=utcnow())
        )
        session.commit()
    assert plan.next_charge_at is not None
    _run(db, plan.next_charge_at)
    assert plan_row(db, plan.id).status == "CANCELLED"
    assert len(plan_charges(db, plan.id)) == 1
    deliver(db, settings, SimulatedProvider(db))
    assert _told(db, donor.id) == ([], [])


def test_deleting_the_account_ends_its_gifts_at_once_and_keeps_past_charges(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
    organiser: Principal,
) -> None:
    donor = make_user()
    monthly = _start(db, donor, campaign, key="monthly")
    weekly = _start(
        db, donor, campaign, key="weekly", interval=RecurringInterval.WEEKLY
    )
    other = _start(db, make_user(), campaign, key="someone else's")
    erasure.delete_account(UnitOfWork(db), principal=donor, password=PASSWORD)
    for plan in (monthly, weekly):
        ended = plan_row(db, plan.id)
        assert (ended.status, ended.next_charge_at) == ("CANCELLED", None)
        [first] = plan_charges(db, plan.id)  # the first period's charge stays
        assert first.status in ("AUTHORIZED", "CAPTURED")
        assert first.amount_cents == plan.amount_cents
    assert plan_row(db, other.id).status == "ACTIVE"
    with db.read() as session:
        giving = recurring_stats.monthly_giving(
            session, principal=organiser, campaign_id=campaign.id
        )
    assert (giving.donors, giving.active_plans) == (1, 1)
    assert giving.monthly_amount_cents == other.amount_cents
    assert other.next_charge_at is not None
    _run(db, other.next_charge_at + timedelta(days=40))
    assert len(plan_charges(db, monthly.id)) == len(plan_charges(db, weekly.id)) == 1
    deliver(db, settings, SimulatedProvider(db))
    assert _told(db, donor.id) == ([], [])  # nobody left to tell

"""Charging recurring gifts: one pledge per period, never two.

A period is charged in three steps, each safe to repeat after a crash:

1. the pledge of the plan's current period and try is created, or found when
   an earlier run created it (its key is the plan, the period and the try;
   a unique index on the pledges makes a second one impossible);
2. the provider authorizes it with the saved card (idempotent per pledge);
3. the pledge moves to AUTHORIZED or FAILED through the shared machine, and
   the plan moves on (next period, or a retry, or PAUSED) in the same commit,
   only if it is still at that period and try.

So a run killed anywhere leaves the plan due at the same period, and the next
run finishes it with the same pledge. Schedulers claim plans with `FOR UPDATE
SKIP LOCKED` (PostgreSQL) and a lease, so several processes share the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.clock import new_id, utcnow
from careforall.domain.events import RecurringDonationStopped
from careforall.domain.recurring import (
    RecurringInterval,
    RecurringStatus,
    charge_key,
    period_due_at,
    retry_delay,
)
from careforall.domain.states import CampaignStatus, PledgeStatus
from careforall.models import Campaign, Pledge, RecurringDonation, User
from careforall.payments.provider import (
    PaymentProvider,
    ProviderResult,
    ProviderUnavailable,
    SavesPaymentMethods,
    UnknownPaymentMethod,
)
from careforall.services.campaigns import accepting_pledges
from careforall.services.pledges import insert_pledge
from careforall.services.transitions import (
    move_pledge,
    pledge_to_move,
)
from careforall.services.unit_of_work import UnitOfWork

# How long a scheduler holds a plan it claimed, renewed at each period it
# charges; one that dies with it leaves it to the others (or to itself,
# restarted) after this.
LEASE = timedelta(seconds=30)
BATCH = 50
CAMPAIGN_CLOSED = "The campaign is no longer taking donations."


@dataclass
class RunResult:
    """What a run did: periods charged (authorized), declined or skipped (the
    campaign PAUSED), plans paused or ended; `unanswered`: why the run
    stopped early (the provider did not answer), None when it did not;
    `unknown_cards`: plans left due because the provider does not know their
    card (one saved with another provider)."""

    charged: int = 0
    declined: int = 0
    skipped: int = 0
    paused: int = 0
    ended: int = 0
    unanswered: str | None = None
    unknown_cards: list[str] = field(default_factory=list)

    def add(self, other: RunResult) -> None:
        self.charged += other.charged
        self.declined += other.declined
        self.skipped += other.skipped
        self.paused += other.paused
        self.ended += other.ended
        self.unknown_cards += other.unknown_cards


def _locked_plan(uow: UnitOfWork, plan_id: str) -> RecurringDonation | None:
    return uow.session.exec(
        select(RecurringDonation)
        .where(RecurringDonation.id == plan_id)
        .with_for_update()
    ).first()


def _is_due(plan: RecurringDonation, now: datetime) -> bool:
    return (
        plan.status == RecurringStatus.ACTIVE
        and plan.next_charge_at is not None
        and plan.next_charge_at <= now
    )


def stop_plan(
    uow: UnitOfWork, plan: RecurringDonation, status: RecurringStatus, reason: str
) -> None:
    """The plan stops charging (PAUSED or CANCELLED) and its donor is told."""
    now = utcnow()
    plan.status = status.value
    plan.next_charge_at = None
    plan.claimed_until = None
    plan.updated_at = now
    uow.session.add(plan)
    uow.emit(
        RecurringDonationStopped(
            plan_id=plan.id,
            donor_user_id=plan.donor_user_id,
            campaign_id=plan.campaign_id,
            status=status.value,
            reason=reason,
            at=now.isoformat(),
        )
    )


def _period_pledge(uow: UnitOfWork, plan: RecurringDonation) -> Pledge:
    """The pledge of the plan's current period and try, made if missing."""
    session = uow.session
    found = session.exec(
        select(Pledge).where(
            Pledge.recurring_donation_id == plan.id,
            Pledge.recurring_period == plan.period,
            Pledge.recurring_attempt == plan.attempt,
        )
    ).first()
    if found is not None:
        return found
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id("plg"),
        "campaign_id": plan.campaign_id,
        "amount_cents": plan.amount_cents,
        "currency": plan.currency,
        "status": PledgeStatus.PENDING.value,
        "idempotency_scope": f"user:{plan.donor_user_id}",
        "idempotency_key": charge_key(plan.id, plan.period, plan.attempt),
        "donor_user_id": plan.donor_user_id,
        "donor_session_id": None,
        "donor_name": None,
        "message": None,
        "donor_email": None,
        "campaign_updates": False,
        "receipt_number": None,  # given when its receipt is written
        "receipt_issued_at": None,
        "payment_method": None,
        "failure_reason": None,
        "refunded_cents": 0,
        "dispute_status": None,
        "dispute_lost_cents": 0,
        "created_at": now,
        "updated_at": now,
        "recurring_donation_id": plan.id,
        "recurring_period": plan.period,
        "recurring_attempt": plan.attempt,
    }
    insert_pledge(uow, session.connection(), row, at=now)
    pledge = session.get(Pledge, row["id"])
    assert pledge is not None
    return pledge


def _not_charged(
    uow: UnitOfWork, plan: RecurringDonation, campaign: Campaign | None
) -> RunResult | None:
    """The period is not charged when the campaign takes no donations: a
    PAUSED campaign's period is skipped (the plan goes on with the next), any
    other ends the plan. A donor who deleted their account gives no more."""
    donor = uow.session.get(User, plan.donor_user_id)
    if donor is None or donor.erased_at is not None:
        stop_plan(uow, plan, RecurringStatus.CANCELLED, "account_deleted")
        return RunResult(ended=1)
    if campaign is not None and accepting_pledges(campaign):
        return None
    if campaign is not None and campaign.status == CampaignStatus.PAUSED:
        _skip_period(uow, plan)
        return RunResult(skipped=1)
    stop_plan(uow, plan, RecurringStatus.CANCELLED, "campaign_closed")
    return RunResult(ended=1)


def _skip_period(uow: UnitOfWork, plan: RecurringDonation) -> None:
    plan.period += 1
    plan.attempt = 0
    plan.next_charge_at = period_due_at(
        plan.started_at, RecurringInterval(plan.interval), plan.period
    )
    plan.claimed_until = None
    plan.updated_at = utcnow()
    uow.session.add(plan)


def _begin(
    db: Database, plan_id: str, now: datetime
) -> tuple[Pledge, str] | RunResult | None:
    """Step 1: the period's pledge and the card's token; None when the plan
    is not due (any more); what was done instead of a charge (a period
    skipped, the plan ended) otherwise."""
    with UnitOfWork(db) as uow:
        plan = _locked_plan(uow, plan_id)
        if plan is None or not _is_due(plan, now):
            return None
        campaign = uow.session.get(Campaign, plan.campaign_id)
        instead = _not_charged(uow, plan, campaign)
        if instead is not None:
            uow.commit()
            return instead
        pledge = _period_pledge(uow, plan)
        token = plan.payment_method
        plan.claimed_until = utcnow() + LEASE
        uow.session.add(plan)
        uow.commit()
    return pledge, token


def _finish(
    db: Database,
    plan_id: str,
    pledge: Pledge,
    result: ProviderResult,
    now: datetime,
) -> RunResult:
    """Step 3: the pledge's outcome and the plan's next period, one commit."""
    done = RunResult()
    with UnitOfWork(db) as uow:
        plan = _locked_plan(uow, plan_id)
        moving = pledge_to_move(uow, pledge.id)
        assert moving is not None
        target = PledgeStatus.AUTHORIZED if result.approved else PledgeStatus.FAILED
        move_pledge(
            uow, moving, target, source="recurring", failure_reason=result.reason
        )
        if (
            plan is not None
            and plan.status == RecurringStatus.ACTIVE
            and (plan.period, plan.attempt)
            == (pledge.recurring_period, pledge.recurring_attempt)
        ):
            _move_on(uow, plan, result, now, done)
        uow.commit()
    return done


def _move_on(
    uow: UnitOfWork,
    plan: RecurringDonation,
    result: ProviderResult,
    now: datetime,
    done: RunResult,
) -> None:
    """The plan after a period's try: the next period, a retry, or PAUSED."""
    if result.approved:
        done.charged += 1
        plan.period += 1
        plan.attempt = 0
        plan.failure_reason = None
        plan.next_charge_at = period_due_at(
            plan.started_at, RecurringInterval(plan.interval), plan.period
        )
    else:
        done.declined += 1
        plan.attempt += 1
        plan.failure_reason = result.reason
        delay = retry_delay(plan.attempt)
        if delay is None:
            done.paused += 1
            stop_plan(uow, plan, RecurringStatus.PAUSED, "declined")
            return
        plan.next_charge_at = now + delay
    plan.claimed_until = None
    plan.updated_at = utcnow()
    uow.session.add(plan)


def charge_due_period(
    db: Database, *, provider: PaymentProvider, plan_id: str, now: datetime
) -> RunResult | None:
    """Charge the plan's period if it is due by `now`; None when nothing was
    due. A provider that cannot be reached raises: the plan stays due."""
    begun = _begin(db, plan_id, now)
    if begun is None or isinstance(begun, RunResult):
        return begun
    pledge, token = begun
    if pledge.status != PledgeStatus.PENDING:
        # Decided before a crash (the provider's answer or its webhook):
        # only the plan still has to move on.
        approved = pledge.status != PledgeStatus.FAILED
        result = ProviderResult(approved=approved, reason=pledge.failure_reason)
    else:
        assert isinstance(provider, SavesPaymentMethods)
        # The first try of the first period is charged while the donor is
        # there (starting the plan); every retry of it asks the same way,
        # since a provider's idempotency key stands for one request.
        first = (pledge.recurring_period, pledge.recurring_attempt) == (0, 0)
        result = provider.charge_saved(
            pledge_id=pledge.id,
            amount_cents=pledge.amount_cents,
            currency=pledge.currency,
            token=token,
            donor_present=first,
        )
    return _finish(db, plan_id, pledge, result, now)


def claim_due(db: Database, *, now: datetime, limit: int = BATCH) -> list[str]:
    """Plans due by `now` that no other scheduler holds, held for this one
    for `LEASE` (wall-clock time, whatever `now` says)."""
    wall = utcnow()
    free = col(RecurringDonation.claimed_until).is_(None) | (
        col(RecurringDonation.claimed_until) < wall
    )
    with db.write_session() as session:
        ids = list(
            session.exec(
                select(RecurringDonation.id)
                .where(
                    RecurringDonation.status == RecurringStatus.ACTIVE.value,
                    col(RecurringDonation.next_charge_at) <= now,
                    free,
                )
                .order_by(col(RecurringDonation.next_charge_at))
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
        )
        if ids:
            session.execute(
                update(RecurringDonation)
                .where(col(RecurringDonation.id).in_(ids))
                .values(claimed_until=wall + LEASE)
            )
            session.commit()
    return ids


def release(db: Database, plan_ids: list[str]) -> None:
    """Let go of plans this run claimed but will not charge now, so the next
    run (this process's or another's) takes them at once."""
    with db.write_session() as session:
        session.execute(
            update(RecurringDonation)
            .where(col(RecurringDonation.id).in_(plan_ids))
            .values(claimed_until=None)
        )
        session.commit()


def run_due(
    db: Database,
    *,
    provider: PaymentProvider,
    now: datetime,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    """Charge every period due by `now`: a plan behind by several periods is
    charged for each of them, oldest first. The run stops at the first call
    the provider does not answer: the period stays due, and the next run
    asks again with the same pledge (the same idempotency key)."""
    total = RunResult()
    while not should_stop():
        ids = claim_due(db, now=now)
        if not ids:
            break
        for index, plan_id in enumerate(ids):
            try:
                while not should_stop():
                    done = charge_due_period(
                        db, provider=provider, plan_id=plan_id, now=now
                    )
                    if done is None:
                        break
                    total.add(done)
            except ProviderUnavailable as exc:
                release(db, ids[index:])
                total.unanswered = str(exc)
                return total
            except UnknownPaymentMethod:
                # Saved with another provider than this server's: charging
                # it is not this run's to decide; the plan waits, untouched.
                total.unknown_cards.append(plan_id)
    return total

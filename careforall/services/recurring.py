"""Recurring gifts: a signed-in donor's weekly or monthly plan, and its
changes (amount, card, pause, resume, cancel). Charging lives in
`services.recurring_charges`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from careforall.db import Database
from careforall.domain.clock import new_id, utcnow
from careforall.domain.errors import (
    BadUserInput,
    CampaignNotActive,
    Forbidden,
    IdempotencyKeyReused,
    InvalidTransition,
    NotFound,
    ProviderBusy,
)
from careforall.domain.money import (
    check_currency,
    check_pledge_amount,
    check_same_currency,
)
from careforall.domain.recurring import (
    RecurringInterval,
    RecurringStatus,
    period_due_at,
)
from careforall.domain.rules import Principal, require_user
from careforall.models import Campaign, Pledge, RecurringDonation
from careforall.payments.provider import (
    PaymentProvider,
    PaymentRefused,
    ProviderUnavailable,
    SavesPaymentMethods,
    UnknownPaymentMethod,
)
from careforall.services.campaigns import accepting_pledges
from careforall.services.pagination import Page, newest_first
from careforall.services.pledges import MAX_KEY_LENGTH
from careforall.services.recurring_charges import (
    charge_due_period,
    stop_plan,
)
from careforall.services.unit_of_work import UnitOfWork

NOT_FOUND = "There is no recurring donation with that id."
# The most plans `myRecurringDonations` lists (the newest): bounds a query's cost.
PLANS_SHOWN = 50


@dataclass(frozen=True)
class RecurringData:
    campaign_id: str
    amount_cents: int
    payment_method: str
    idempotency_key: str
    currency: str = "USD"
    interval: RecurringInterval = RecurringInterval.MONTHLY


def _check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or key.strip() != key:
        raise BadUserInput(
            f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} characters without "
            "leading or trailing spaces; send a new random key for each plan."
        )
    return key


def _token(provider: PaymentProvider, donor_id: str, payment_method: str) -> str:
    """The provider's token for the card; nothing is stored or charged for a
    card it does not know."""
    if not 1 <= len(payment_method) <= 100:
        raise BadUserInput("paymentMethod must be 1 to 100 characters.")
    if not isinstance(provider, SavesPaymentMethods):
        raise BadUserInput("This payment provider cannot keep a card for later.")
    try:
        return provider.save_payment_method(
            donor_id=donor_id, payment_method=payment_method
        )
    except UnknownPaymentMethod:
        raise BadUserInput(
            "That payment method is not known; nothing was charged."
        ) from None
    except PaymentRefused as refused:
        raise BadUserInput(
            f"The card could not be saved: {refused}; nothing was charged."
        ) from None
    except ProviderUnavailable:
        raise ProviderBusy() from None


def _replay(
    session: Session, donor_id: str, data: RecurringData
) -> RecurringDonation | None:
    plan = session.exec(
        select(RecurringDonation).where(
            RecurringDonation.donor_user_id == donor_id,
            RecurringDonation.idempotency_key == data.idempotency_key,
        )
    ).first()
    if plan is None:
        return None
    if (plan.campaign_id, plan.amount_cents, plan.currency, plan.interval) != (
        data.campaign_id,
        data.amount_cents,
        data.currency,
        data.interval.value,
    ):
        raise IdempotencyKeyReused(
            "This idempotencyKey was already used for a different plan; "
            "use a new key for a new plan."
        )
    return plan


def _new_plan(
    uow: UnitOfWork, donor: Principal, data: RecurringData, token: str
) -> RecurringDonation:
    """The plan, its first period due now; or the one this key already made."""
    with uow:
        session = uow.session
        existing = _replay(session, donor.id, data)
        if existing is not None:
            return existing
        campaign = session.get(Campaign, data.campaign_id)
        if campaign is None:
            raise NotFound("There is no campaign with that id.")
        check_same_currency(data.currency, campaign.currency)
        if not accepting_pledges(campaign):
            raise CampaignNotActive("This campaign is not taking donations now.")
        now = utcnow()
        plan = RecurringDonation(
            id=new_id("rec"),
            donor_user_id=donor.id,
            campaign_id=campaign.id,
            amount_cents=data.amount_cents,
            currency=data.currency,
            interval=data.interval.value,
            status=RecurringStatus.ACTIVE.value,
            payment_method=token,
            idempotency_key=data.idempotency_key,
            started_at=now,
            next_charge_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(plan)
        try:
            uow.commit()
        except IntegrityError:
            # A concurrent request with this key won: answer with its plan.
            uow.rollback()
            winner = _replay(session, donor.id, data)
            if winner is None:
                raise
            return winner
    return plan


def create_recurring_donation(
    uow: UnitOfWork,
    *,
    provider: PaymentProvider,
    principal: Principal | None,
    data: RecurringData,
) -> RecurringDonation:
    """Start a plan and charge its first period at once, as a pledge like any
    other; a first period declined leaves the plan PAUSED (the donor may
    update the card and resume). A replayed key answers with the plan."""
    donor = require_user(principal)
    data = RecurringData(
        campaign_id=data.campaign_id,
        amount_cents=check_pledge_amount(data.amount_cents),
        payment_method=data.payment_method,
        idempotency_key=_check_key(data.idempotency_key),
        currency=check_currency(data.currency),
        interval=data.interval,
    )
    token = _token(provider, donor.id, data.payment_method)
    plan = _new_plan(uow, donor, data, token)
    if plan.period == 0 and plan.status == RecurringStatus.ACTIVE:
        try:
            charge_due_period(
                uow.db, provider=provider, plan_id=plan.id, now=plan.started_at
            )
        except ProviderUnavailable:
            # The first period stays due with its pledge: the same request
            # again (same key) asks the provider again, as the scheduler would.
            raise ProviderBusy() from None
        with UnitOfWork(uow.db) as first:
            first_plan = first.session.get(RecurringDonation, plan.id)
            assert first_plan is not None
            if first_plan.period == 0 and first_plan.attempt > 0:
                stop_plan(first, first_plan, RecurringStatus.PAUSED, "declined")
                first.commit()
            plan = first_plan
    return plan


def _own_plan(
    uow: UnitOfWork, principal: Principal, plan_id: str, *, admin_too: bool
) -> RecurringDonation:
    """The caller's plan, locked (an admin's: Forbidden unless `admin_too`);
    NotFound for another's, as for an unknown id."""
    plan = uow.session.exec(
        select(RecurringDonation)
        .where(RecurringDonation.id == plan_id)
        .with_for_update()
    ).first()
    if plan is None or not (plan.donor_user_id == principal.id or principal.is_admin):
        raise NotFound(NOT_FOUND)
    if plan.donor_user_id != principal.id and not admin_too:
        raise Forbidden("Only the plan's donor may change it.")
    return plan


def _save(uow: UnitOfWork, plan: RecurringDonation) -> RecurringDonation:
    plan.updated_at = utcnow()
    uow.session.add(plan)
    uow.commit()
    return plan


def cancel_recurring_donation(
    uow: UnitOfWork, *, principal: Principal | None, plan_id: str
) -> RecurringDonation:
    """No further charge; past charges stay as they are. Its donor or an admin;
    cancelling a cancelled plan changes nothing."""
    caller = require_user(principal)
    with uow:
        plan = _own_plan(uow, caller, plan_id, admin_too=True)
        if plan.status == RecurringStatus.CANCELLED:
            return plan
        plan.status = RecurringStatus.CANCELLED.value
        plan.next_charge_at = None
        plan.claimed_until = None
        return _save(uow, plan)


def pause_recurring_donation(
    uow: UnitOfWork, *, principal: Principal | None, plan_id: str
) -> RecurringDonation:
    """No charge until resumed. Its donor; a paused plan stays as it is."""
    donor = require_user(principal)
    with uow:
        plan = _own_plan(uow, donor, plan_id, admin_too=False)
        if plan.status == RecurringStatus.CANCELLED:
            raise InvalidTransition("A cancelled recurring donation cannot pause.")
        if plan.status == RecurringStatus.PAUSED:
            return plan
        plan.status = RecurringStatus.PAUSED.value
        plan.next_charge_at = None
        plan.claimed_until = None
        return _save(uow, plan)


def _next_period_from(plan: RecurringDonation, now: datetime) -> int:
    """The first period due at or after `now`: periods that fell due while
    the plan was paused are not charged afterwards."""
    interval = RecurringInterval(plan.interval)
    period = plan.period
    while period_due_at(plan.started_at, interval, period) < now:
        period += 1
    return period


def resume_recurring_donation(
    uow: UnitOfWork, *, principal: Principal | None, plan_id: str
) -> RecurringDonation:
    """A paused plan charges again from its next period; a period left unpaid
    by declines is tried again at once. Its donor."""
    donor = require_user(principal)
    with uow:
        plan = _own_plan(uow, donor, plan_id, admin_too=False)
        if plan.status == RecurringStatus.CANCELLED:
            raise InvalidTransition("A cancelled recurring donation cannot resume.")
        if plan.status == RecurringStatus.ACTIVE:
            return plan
        campaign = uow.session.get(Campaign, plan.campaign_id)
        if campaign is None or not accepting_pledges(campaign):
            raise CampaignNotActive("This campaign is not taking donations now.")
        now = utcnow()
        plan.status = RecurringStatus.ACTIVE.value
        if plan.attempt > 0:
            # Its card was declined: the unpaid period is tried once more now
            # (a try of its own: the declined ones keep their pledges); a
            # decline pauses the plan again, the retries being spent.
            plan.next_charge_at = now
        else:
            plan.period = _next_period_from(plan, now)
            interval = RecurringInterval(plan.interval)
            plan.next_charge_at = period_due_at(plan.started_at, interval, plan.period)
        return _save(uow, plan)


def update_recurring_donation(
    uow: UnitOfWork,
    *,
    provider: PaymentProvider,
    principal: Principal | None,
    plan_id: str,
    amount_cents: int | None = None,
    payment_method: str | None = None,
) -> RecurringDonation:
    """A new amount for the periods not charged yet, or a new card. Its donor."""
    donor = require_user(principal)
    if amount_cents is not None:
        check_pledge_amount(amount_cents)
    token = (
        _token(provider, donor.id, payment_method)
        if payment_method is not None
        else None
    )
    with uow:
        plan = _own_plan(uow, donor, plan_id, admin_too=False)
        if plan.status == RecurringStatus.CANCELLED:
            raise InvalidTransition("A cancelled recurring donation cannot change.")
        if amount_cents is not None:
            plan.amount_cents = amount_cents
        if token is not None:
            plan.payment_method = token
        return _save(uow, plan)


def my_recurring_donations(
    session: Session, *, principal: Principal | None
) -> Sequence[RecurringDonation]:
    """The caller's plans, newest first (the newest PLANS_SHOWN)."""
    donor = require_user(principal)
    return session.exec(
        select(RecurringDonation)
        .where(RecurringDonation.donor_user_id == donor.id)
        .order_by(col(RecurringDonation.id).desc())
        .limit(PLANS_SHOWN)
    ).all()


def plan_charges(
    db: Database, *, plan_id: str, first: int, after: str | None
) -> Page[Pledge]:
    """A plan's pledges (one per try of a period), newest first. The caller
    has the plan already: whoever may see a plan may see its charges."""
    query = select(Pledge).where(Pledge.recurring_donation_id == plan_id)
    with db.read() as session:
        return newest_first(session, query, first=first, after=after)


def plan_of(db: Database, plan_id: str) -> RecurringDonation | None:
    """A plan by id, for the pledge that belongs to it."""
    with db.read() as session:
        return session.get(RecurringDonation, plan_id)


def end_campaign_plans(uow: UnitOfWork, *, campaign_id: str) -> int:
    """A campaign that closed or was suspended ends its plans (CANCELLED);
    each donor is told. Returns how many; none the second time."""
    with uow:
        plans = uow.session.exec(
            select(RecurringDonation)
            .where(
                RecurringDonation.campaign_id == campaign_id,
                col(RecurringDonation.status).in_(
                    [RecurringStatus.ACTIVE.value, RecurringStatus.PAUSED.value]
                ),
            )
            .with_for_update()
        ).all()
        for plan in plans:
            stop_plan(uow, plan, RecurringStatus.CANCELLED, "campaign_closed")
        if plans:
            uow.commit()
    return len(plans)

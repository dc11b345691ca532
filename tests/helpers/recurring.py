"""Recurring gifts started and read through the services, as the API and the
scheduler would, with whichever payment provider a test runs on."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select

from careforall.broadcaster import Broadcaster
from careforall.db import Database
from careforall.domain.recurring import RecurringInterval, period_due_at
from careforall.domain.rules import Principal
from careforall.models import Campaign, Pledge, RecurringDonation
from careforall.outbox.dispatcher import Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.payments.provider import PaymentProvider
from careforall.services import recurring
from careforall.services.recurring import RecurringData
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings


def start_plan(
    db: Database,
    provider: PaymentProvider,
    donor: Principal,
    campaign: Campaign,
    *,
    card: str,
    key: str = "plan-1",
    amount: int = 2_500,
    interval: RecurringInterval = RecurringInterval.MONTHLY,
) -> RecurringDonation:
    return recurring.create_recurring_donation(
        UnitOfWork(db),
        provider=provider,
        principal=donor,
        data=RecurringData(
            campaign_id=campaign.id,
            amount_cents=amount,
            payment_method=card,
            idempotency_key=key,
            interval=interval,
        ),
    )


def plan_row(db: Database, plan_id: str) -> RecurringDonation:
    with db.read() as session:
        plan = session.get(RecurringDonation, plan_id)
        assert plan is not None
        return plan


def plan_charges(db: Database, plan_id: str) -> list[Pledge]:
    """The plan's pledges, period by period, each period's attempts in order."""
    with db.read() as session:
        return list(
            session.exec(
                select(Pledge)
                .where(Pledge.recurring_donation_id == plan_id)
                .order_by(
                    col(Pledge.recurring_period),
                    col(Pledge.recurring_attempt),
                    col(Pledge.id),
                )
            ).all()
        )


def due(plan: RecurringDonation, period: int) -> datetime:
    """When a monthly plan's `period` falls due."""
    return period_due_at(plan.started_at, RecurringInterval.MONTHLY, period)


def deliver(db: Database, settings: Settings, provider: PaymentProvider) -> None:
    """Run the outbox until nothing is due (a redelivery changes nothing)."""
    dispatcher = Dispatcher(
        HandlerContext(db=db, settings=settings, provider=provider), Broadcaster()
    )
    while dispatcher.process_due().processed:
        pass

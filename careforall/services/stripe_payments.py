"""Stripe's webhook events applied to pledges, through the same machine and the
same once-per-event-id record as every provider event
(`services.payments.apply_in_transaction`)."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import true, update
from sqlmodel import Session, col, select

from careforall.db import InsertUnlessPresent
from careforall.domain.clock import utcnow
from careforall.domain.states import PledgeStatus
from careforall.models import Pledge, StripePayment, table_of
from careforall.payments.stripe_events import StripeEvent
from careforall.services import alerts, webhook_log
from careforall.services.payments import (
    ProviderEvent,
    UnknownPledge,
    apply_in_transaction,
    claim_event,
)
from careforall.services.refunds import reduce_counted
from careforall.services.transitions import MovingPledge, move_pledge
from careforall.services.unit_of_work import UnitOfWork

# Stripe's statuses of a dispute that is over.
CLOSED = ("won", "lost", "warning_closed", "prevented")

_REMEMBER = InsertUnlessPresent(table_of(StripePayment), "pledge_id")
HOLDS_MONEY = (
    "payment_intent.amount_capturable_updated",
    "payment_intent.succeeded",
)


def pledge_of_intent(session: Session, payment_intent_id: str) -> str | None:
    return session.exec(
        select(StripePayment.pledge_id).where(
            StripePayment.payment_intent_id == payment_intent_id
        )
    ).first()


def _provider_event(uow: UnitOfWork, event: StripeEvent) -> ProviderEvent:
    """The event as every provider's, for its pledge: the PaymentIntent's
    `metadata.pledge_id`, or (a Charge's event) the pledge that PaymentIntent
    was made for. The PaymentIntent is remembered for its pledge in the
    caller's transaction, so a capture can follow even when Stripe's answer
    to the authorization was lost."""
    session = uow.session
    pledge_id = event.pledge_id or pledge_of_intent(session, event.payment_intent_id)
    if pledge_id is None:
        raise UnknownPledge("no pledge for this PaymentIntent")
    remembered = _REMEMBER.run(
        session.connection(),
        {
            "pledge_id": pledge_id,
            "payment_intent_id": event.payment_intent_id,
            "created_at": utcnow(),
        },
    )
    if not remembered and event.type in HOLDS_MONEY:
        # The donor paid on another PaymentIntent than the one kept (started
        # on the phone's payment sheet, finished on the web's Checkout): the
        # one holding the money is the one to capture and refund.
        session.execute(
            update(StripePayment)
            .where(col(StripePayment.pledge_id) == pledge_id)
            .where(col(StripePayment.payment_intent_id) != event.payment_intent_id)
            .values(payment_intent_id=event.payment_intent_id)
        )
    return ProviderEvent(
        id=event.id,
        type=event.type,
        pledge_id=pledge_id,
        amount_cents=event.amount_cents,
        currency=event.currency,
        reason=event.reason,
        target=event.target,
    )


def intents_of(session: Session, pledge_ids: list[str]) -> dict[str, str]:
    """Pledge id -> its Stripe PaymentIntent id, for those that have one."""
    rows = session.exec(
        select(StripePayment.pledge_id, StripePayment.payment_intent_id).where(
            col(StripePayment.pledge_id).in_(pledge_ids)
        )
    ).all()
    return dict(rows)


def apply_stripe_event(uow: UnitOfWork, *, event: StripeEvent) -> bool:
    """Apply one event, once per event id; True for a duplicate. Raises
    UnknownPledge or AmountMismatch, changing nothing."""
    with uow:
        moving = _provider_event(uow, event)
        if event.is_dispute:
            return _dispute(uow, replace(moving, partial=True), event)
        if event.target is None:
            return _refund_in_part(uow, moving, event.amount_refunded)
        return apply_in_transaction(uow, moving)


def _claim_captured(uow: UnitOfWork, event: ProviderEvent) -> MovingPledge | None:
    """`claim_event`, and a refund or a dispute implies the capture: a pledge
    the events have not captured yet is captured first."""
    pledge = claim_event(uow, event)
    if pledge is not None:
        move_pledge(uow, pledge, PledgeStatus.CAPTURED, source=f"webhook:{event.id}")
    return pledge


def _refund_in_part(uow: UnitOfWork, event: ProviderEvent, refunded: int) -> bool:
    """A partial refund: the pledge counts for its amount less `refunded`
    (Stripe's running sum of the charge's refunds, so a late or repeated
    event never lowers it twice)."""
    pledge = _claim_captured(uow, event)
    if pledge is None:
        return True
    reduce_counted(uow, pledge, Pledge.refunded_cents, refunded)
    uow.commit()
    return False


def _dispute(uow: UnitOfWork, event: ProviderEvent, dispute: StripeEvent) -> bool:
    """A dispute opened or closed: the pledge shows Stripe's status, admins are
    told, and a lost one takes its amount out of what the pledge counts for."""
    pledge = _claim_captured(uow, event)
    if pledge is None:
        return True
    status = dispute.dispute_status or "unknown"
    closed = dispute.type == "charge.dispute.closed"
    # A late "created" never reopens a dispute already closed.
    current = col(Pledge.dispute_status)
    uow.session.execute(
        update(Pledge)
        .where(col(Pledge.id) == pledge.id)
        .where(current.is_(None) | current.not_in(CLOSED) if not closed else true())
        .values(dispute_status=status)
    )
    if closed and status == "lost":
        reduce_counted(uow, pledge, Pledge.dispute_lost_cents, event.amount_cents)
    alerts.notify_dispute(
        uow.session,
        pledge_id=pledge.id,
        amount_cents=event.amount_cents,
        currency=event.currency,
        status=status,
        closed=closed,
    )
    uow.commit()
    return False


def record_mismatch(uow: UnitOfWork, *, event: StripeEvent, reason: str) -> None:
    """Log an event whose amount or currency is not its pledge's, and alert
    the admins, in one commit; the pledge and the totals stay as they are.

    Answered 200 all the same: Stripe would send it again for three days,
    and it would never match."""
    with uow:
        session = uow.session
        pledge_id = event.pledge_id or pledge_of_intent(
            session, event.payment_intent_id
        )
        pledge = session.get(Pledge, pledge_id) if pledge_id else None
        assert pledge is not None, "a mismatch is found on a known pledge"
        webhook_log.add(
            session,
            webhook_log.WebhookEntry(
                outcome=webhook_log.WebhookOutcome.REJECTED_UNPROCESSABLE,
                status_code=200,
                event_id=event.id,
                type=event.type,
                pledge_id=pledge.id,
                reason=reason,
            ),
        )
        alerts.notify_payment_mismatch(
            session,
            provider="Stripe",
            event_id=event.id,
            pledge_id=pledge.id,
            detail=f"{event.amount_cents} {event.currency} where the pledge is "
            f"{pledge.amount_cents} {pledge.currency}",
        )
        uow.commit()

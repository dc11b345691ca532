"""Stripe's webhook events applied to pledges, through the same machine and the
same once-per-event-id record as every provider event
(`services.payments.apply_in_transaction`)."""

from __future__ import annotations

from sqlmodel import Session, select

from careforall.db import InsertUnlessPresent
from careforall.domain.clock import utcnow
from careforall.models import Pledge, StripePayment, table_of
from careforall.payments.stripe_events import StripeEvent
from careforall.services import alerts, webhook_log
from careforall.services.payments import (
    ProviderEvent,
    UnknownPledge,
    apply_in_transaction,
)
from careforall.services.unit_of_work import UnitOfWork

_REMEMBER = InsertUnlessPresent(table_of(StripePayment), "pledge_id")


def pledge_of_intent(session: Session, payment_intent_id: str) -> str | None:
    return session.exec(
        select(StripePayment.pledge_id).where(
            StripePayment.payment_intent_id == payment_intent_id
        )
    ).first()


def apply_stripe_event(uow: UnitOfWork, *, event: StripeEvent) -> bool:
    """Apply one event that moves a pledge, once per event id; True for a
    duplicate. The pledge is the PaymentIntent's `metadata.pledge_id`, or
    (a Charge's event) the pledge that PaymentIntent was made for.

    The PaymentIntent is remembered for its pledge in the same commit, so a
    capture can follow even when Stripe's answer to the authorization was
    lost. Raises UnknownPledge or AmountMismatch, changing nothing."""
    target = event.target
    assert target is not None, "a partial refund moves no pledge"
    with uow:
        session = uow.session
        pledge_id = event.pledge_id or pledge_of_intent(
            session, event.payment_intent_id
        )
        if pledge_id is None:
            raise UnknownPledge("no pledge for this PaymentIntent")
        _REMEMBER.run(
            session.connection(),
            {
                "pledge_id": pledge_id,
                "payment_intent_id": event.payment_intent_id,
                "created_at": utcnow(),
            },
        )
        return apply_in_transaction(
            uow,
            ProviderEvent(
                id=event.id,
                type=event.type,
                pledge_id=pledge_id,
                amount_cents=event.amount_cents,
                currency=event.currency,
                reason=event.reason,
                target=target,
            ),
        )


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

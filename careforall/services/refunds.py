"""Partial refunds and lost disputes: a CAPTURED pledge that counts for less.

The pledge keeps what was refunded (`refunded_cents`, the provider's running
sum) and what a lost dispute took (`dispute_lost_cents`); the totals count
its amount less both (`services/totals.py`), settled by a
`PledgeAmountReduced` event. Each figure only ever rises to the provider's
latest, so a late or repeated event, or the webhook of a refund this app
asked for, never lowers the totals twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import col

from careforall.domain.clock import utcnow
from careforall.domain.errors import BadUserInput, InvalidTransition, ProviderBusy
from careforall.domain.events import PledgeAmountReduced
from careforall.domain.rules import Principal, require_admin
from careforall.domain.states import PledgeStatus
from careforall.models import Pledge
from careforall.payments.provider import PaymentProvider, ProviderUnavailable
from careforall.services import audit
from careforall.services.pledges import require_pledge
from careforall.services.transitions import MovingPledge, pledge_to_move
from careforall.services.unit_of_work import UnitOfWork


def reduce_counted(
    uow: UnitOfWork, pledge: MovingPledge, column: Any, cents: int
) -> bool:
    """Raise the pledge's `column` (refunded or dispute-lost cents) to `cents`,
    never lower it; when it rose, the totals follow (an outbox event). True
    when it rose."""
    if pledge.status != PledgeStatus.CAPTURED:
        return False  # refunded or failed meanwhile: it counts for nothing
    raised = uow.session.execute(
        update(Pledge)
        .where(col(Pledge.id) == pledge.id)
        .where(col(column) < cents)
        .values({column: cents, Pledge.updated_at: utcnow()})
        .returning(col(Pledge.refunded_cents), col(Pledge.dispute_lost_cents))
    ).first()
    if raised is None:
        return False
    uow.emit(
        PledgeAmountReduced(
            pledge_id=pledge.id,
            campaign_id=pledge.campaign_id,
            amount_cents=pledge.amount_cents,
            currency=pledge.currency,
            refunded_cents=raised[0],
            dispute_lost_cents=raised[1],
        )
    )
    return True


def refund_in_part(
    uow: UnitOfWork,
    *,
    provider: PaymentProvider,
    principal: Principal | None,
    pledge_id: str,
    amount_cents: int,
) -> Pledge | None:
    """An admin refunds part of a CAPTURED pledge through the provider: it
    stays CAPTURED and counts for `amount_cents` less (audited). None when
    the amount is all that is left: that is a whole refund, for the caller."""
    admin = require_admin(principal)
    with uow.db.read() as session:
        pledge = require_pledge(session, pledge_id)
    if pledge.status != PledgeStatus.CAPTURED:
        raise InvalidTransition(f"A {pledge.status} pledge cannot be refunded.")
    left = pledge.amount_cents - pledge.refunded_cents
    if not 1 <= amount_cents <= left:
        raise BadUserInput(f"amountCents must be from 1 to {left}, what is left.")
    if amount_cents == left:
        return None
    before = pledge.refunded_cents
    try:
        result = provider.refund(
            pledge_id=pledge.id, amount_cents=amount_cents, refunded_cents=before
        )
    except ProviderUnavailable:
        raise ProviderBusy() from None
    if not result.approved:
        raise InvalidTransition(f"The provider refused the refund: {result.reason}")
    with uow:
        moving = pledge_to_move(uow, pledge.id)
        assert moving is not None  # pledges are never deleted while CAPTURED
        reduce_counted(uow, moving, Pledge.refunded_cents, before + amount_cents)
        audit.record(
            uow,
            actor=admin,
            action="refund",
            target_type="pledge",
            target_id=pledge.id,
            detail={
                "from": pledge.status,
                "to": PledgeStatus.CAPTURED.value,
                "amount_cents": amount_cents,
                "currency": pledge.currency,
                "partial": True,
            },
        )
        uow.commit()
    with uow.db.read() as session:
        return require_pledge(session, pledge.id)

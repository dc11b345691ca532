"""Payments: authorize, capture and refund through the provider, and apply its events.

The provider's answer and its webhook both go through the pledge machine
with `advance`, so whichever arrives second changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import bindparam, literal
from sqlalchemy import select as core_select

from careforall.db import InsertUnlessPresent
from careforall.direct import Direct
from careforall.domain.clock import utcnow
from careforall.domain.errors import (
    BadUserInput,
    Forbidden,
    InvalidTransition,
    NotFound,
    ProviderBusy,
)
from careforall.domain.rules import (
    Principal,
    is_donor_of,
    require_admin,
    require_principal,
)
from careforall.domain.states import TRIGGER_FOR, PledgeStatus, fire
from careforall.models import Pledge, WebhookEvent, table_of
from careforall.payments.provider import (
    PaymentProvider,
    ProviderUnavailable,
    UnknownPaymentMethod,
)
from careforall.services import audit, webhook_log
from careforall.services.pledges import current_status, require_pledge
from careforall.services.transitions import MovingPledge, move_pledge, pledge_to_move
from careforall.services.unit_of_work import UnitOfWork

log = logging.getLogger("careforall.payments")
GENERIC_DECLINE = "The payment provider declined the payment."
CANCELED = "The authorization was canceled before it was captured."
EVENT_TARGETS = {
    "payment.authorized": PledgeStatus.AUTHORIZED,
    "payment.captured": PledgeStatus.CAPTURED,
    "payment.failed": PledgeStatus.FAILED,
    "payment.refunded": PledgeStatus.REFUNDED,
}


def _apply(
    uow: UnitOfWork,
    pledge_id: str,
    target: PledgeStatus,
    *,
    source: str,
    failure_reason: str | None = None,
    by_admin: AdminMove | None = None,
) -> Pledge:
    """Move the pledge towards `target` as far as the machine allows, in one commit.

    An admin's move is audited in that commit, even when the provider's webhook
    got there first and left nothing to move: the admin still asked for it.
    """
    with uow:
        pledge = pledge_to_move(uow, pledge_id)
        if pledge is None:
            raise NotFound("There is no pledge with that id.")
        steps = move_pledge(
            uow, pledge, target, source=source, failure_reason=failure_reason
        )
        if by_admin is not None:
            audit.record(
                uow,
                actor=by_admin.admin,
                # An admin fails a pledge only by canceling its authorization.
                action="cancel"
                if target == PledgeStatus.FAILED
                else TRIGGER_FOR[target],
                target_type="pledge",
                target_id=pledge.id,
                detail={
                    "from": by_admin.from_status,
                    "to": target.value,
                    "amount_cents": pledge.amount_cents,
                    "currency": pledge.currency,
                },
            )
        # Read in this transaction, with the move: the answer shows it.
        moved = require_pledge(uow.session, pledge_id)
        if steps or by_admin is not None:
            uow.commit()
        return moved


@dataclass(frozen=True)
class AdminMove:
    """Who asked for a move, and the status it was checked against."""

    admin: Principal
    from_status: str


def _check_move(pledge: Pledge, target: PledgeStatus) -> None:
    """Refuse a client's move the machine forbids, before calling the provider."""
    probe = _Probe(pledge.status)
    fire(probe, target, source="check", at=utcnow())


@dataclass
class _Probe:
    status: str


def donors_pending_pledge(
    uow: UnitOfWork, *, principal: Principal | None, pledge_id: str
) -> Pledge:
    """The pledge the caller may pay now: their own, and PENDING."""
    donor = require_principal(principal)
    with uow.db.read() as session:
        pledge = require_pledge(session, pledge_id)
    if not is_donor_of(donor, pledge):
        if not donor.is_admin:
            # As for an unknown id: nobody learns that another's pledge exists.
            raise NotFound("There is no pledge with that id.")
        raise Forbidden("Only the pledge's donor may pay it.")
    _check_move(pledge, PledgeStatus.AUTHORIZED)
    return pledge


def authorize_payment(
    uow: UnitOfWork,
    *,
    provider: PaymentProvider,
    principal: Principal | None,
    pledge_id: str,
    payment_method: str,
) -> Pledge:
    """The donor pays a PENDING pledge; a declined card leaves it FAILED."""
    require_principal(principal)
    if not 1 <= len(payment_method) <= 100:
        raise BadUserInput("paymentMethod must be 1 to 100 characters.")
    pledge = donors_pending_pledge(uow, principal=principal, pledge_id=pledge_id)
    try:
        result = provider.authorize(
            pledge_id=pledge.id,
            amount_cents=pledge.amount_cents,
            currency=pledge.currency,
            payment_method=payment_method,
        )
    except UnknownPaymentMethod:
        raise BadUserInput(
            "That payment method is not known; nothing was charged."
        ) from None
    except ProviderUnavailable:
        # Not retried here: the donor (or the provider's webhook) settles it,
        # and the same idempotency key makes a second ask harmless.
        raise ProviderBusy() from None
    if result.approved:
        return _apply(uow, pledge.id, PledgeStatus.AUTHORIZED, source="api")
    return _apply(
        uow, pledge.id, PledgeStatus.FAILED, source="api", failure_reason=result.reason
    )


def move_payment(
    uow: UnitOfWork,
    *,
    provider: PaymentProvider,
    principal: Principal | None,
    pledge_id: str,
    target: PledgeStatus,
) -> Pledge:
    """An admin captures an AUTHORIZED pledge, cancels its authorization (it
    becomes FAILED, nothing charged) or refunds a CAPTURED one, through the
    provider; a refund lowers the totals by its amount (audited)."""
    admin = require_admin(principal)
    if target not in (
        PledgeStatus.CAPTURED,
        PledgeStatus.REFUNDED,
        PledgeStatus.FAILED,
    ):
        raise BadUserInput("An admin can capture, cancel or refund a payment.")
    return _through_provider(
        uow, provider, pledge_id, target, source="admin", admin=admin
    )


def auto_capture(uow: UnitOfWork, *, provider: PaymentProvider, pledge_id: str) -> None:
    """Capture right after authorization; a no-op once the pledge has moved on."""
    if current_status(uow.db, pledge_id) != PledgeStatus.AUTHORIZED:
        return
    try:
        _through_provider(
            uow, provider, pledge_id, PledgeStatus.CAPTURED, source="auto-capture"
        )
    except InvalidTransition as refusal:
        # A definite "no" from the provider (or a move that became impossible):
        # retrying cannot change it, so it is logged and left for an admin.
        # Exceptions from an unreachable provider still propagate and are retried.
        log.warning(
            "automatic capture refused",
            extra={"pledge_id": pledge_id, "reason": refusal.message},
        )


def _through_provider(
    uow: UnitOfWork,
    provider: PaymentProvider,
    pledge_id: str,
    target: PledgeStatus,
    *,
    source: str,
    admin: Principal | None = None,
) -> Pledge:
    """Check the move, ask the provider to capture or refund, then make the
    move (audited when an admin asked); a provider's refusal changes nothing."""
    with uow.db.read() as session:
        pledge = require_pledge(session, pledge_id)
    if target == PledgeStatus.FAILED and pledge.status != PledgeStatus.AUTHORIZED:
        raise InvalidTransition(
            f"A {pledge.status} pledge has no authorization to cancel."
        )
    _check_move(pledge, target)
    try:
        if target == PledgeStatus.CAPTURED:
            action, result = "capture", provider.capture(pledge_id=pledge.id)
        elif target == PledgeStatus.FAILED:
            action, result = "cancel", provider.cancel(pledge_id=pledge.id)
        else:
            action, result = "refund", provider.refund(pledge_id=pledge.id)
    except ProviderUnavailable:
        # The outbox asks again later (auto-capture); an admin is told to.
        raise ProviderBusy() from None
    if not result.approved:
        raise InvalidTransition(f"The provider refused the {action}: {result.reason}")
    move = AdminMove(admin, pledge.status) if admin is not None else None
    reason = CANCELED if target == PledgeStatus.FAILED else None
    return _apply(
        uow, pledge.id, target, source=source, failure_reason=reason, by_admin=move
    )


@dataclass(frozen=True)
class ProviderEvent:
    id: str
    type: str
    pledge_id: str
    amount_cents: int
    currency: str
    reason: str | None = None  # why a payment failed, when the provider says
    # Where the event moves the pledge; None: by `type` (EVENT_TARGETS).
    target: PledgeStatus | None = None
    # The event is about part of the payment (a dispute): its amount may be
    # less than the pledge's, never more.
    partial: bool = False


class WebhookRejected(Exception):
    """The event cannot apply (unknown pledge, other amount); nothing changed."""


class UnknownPledge(WebhookRejected):
    """The event names no pledge of this installation."""


class AmountMismatch(WebhookRejected):
    """The event's amount or currency is not the pledge's."""


# Every webhook asks whether its event id was applied: Core, compiled once.
_WEBHOOK_EVENTS = table_of(WebhookEvent)
_SEEN = Direct(
    core_select(literal(1)).where(_WEBHOOK_EVENTS.c.event_id == bindparam("event_id"))
)
_APPLIED = InsertUnlessPresent(_WEBHOOK_EVENTS, "event_id")


def apply_provider_event(uow: UnitOfWork, *, event: ProviderEvent) -> bool:
    """Apply a provider event once per event id. Returns True for a duplicate."""
    with uow:
        return apply_in_transaction(uow, event)


def apply_in_transaction(uow: UnitOfWork, event: ProviderEvent) -> bool:
    """`apply_provider_event` inside the caller's open unit of work, which it
    commits when the event applies (True for a duplicate: nothing written)."""
    target = event.target or EVENT_TARGETS[event.type]
    pledge = claim_event(uow, event)
    if pledge is None:
        return True
    move_pledge(
        uow,
        pledge,
        target,
        source=f"webhook:{event.id}",
        failure_reason=event.reason or GENERIC_DECLINE,
    )
    uow.commit()
    return False


def claim_event(uow: UnitOfWork, event: ProviderEvent) -> MovingPledge | None:
    """Record in the caller's transaction that `event` applies to its pledge,
    and return that pledge, locked; None when the event was applied before.

    Raises UnknownPledge, or AmountMismatch when the event's amount or currency
    is not the pledge's (the caller's rollback undoes the record)."""
    session = uow.session
    conn = session.connection()
    if _SEEN.first(conn, {"event_id": event.id}) is not None:
        return None
    pledge = pledge_to_move(uow, event.pledge_id)
    if pledge is None:
        raise UnknownPledge("unknown pledge")
    # Recorded before anything else changes: a copy of this event applied
    # meanwhile by another process (PostgreSQL: committed while this one
    # waited for the pledge's lock, or still in flight, which the INSERT
    # waits for) makes it write nothing, and this one is a duplicate.
    applied = _APPLIED.run(
        conn,
        {
            "event_id": event.id,
            "type": event.type,
            "pledge_id": pledge.id,
            "received_at": utcnow(),
        },
    )
    if not applied:
        return None
    if pledge.currency != event.currency or not (
        0 < event.amount_cents <= pledge.amount_cents
        if event.partial
        else event.amount_cents == pledge.amount_cents
    ):
        # Raised: the unit of work rolls the event id back with the rest.
        raise AmountMismatch("amount or currency differs from the pledge")
    # Logged in this commit: "processed" in the log means the effect happened.
    webhook_log.add(
        session,
        webhook_log.WebhookEntry(
            outcome=webhook_log.WebhookOutcome.PROCESSED,
            status_code=200,
            event_id=event.id,
            type=event.type,
            pledge_id=pledge.id,
        ),
    )
    return pledge

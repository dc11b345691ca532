"""Pledges whose provider events never came: ask the provider, apply its answer.

A provider retries its webhooks for a while (Stripe: three days), but an
endpoint can be down for longer, or an event can be lost. Pledges left
PENDING or AUTHORIZED beyond a threshold are asked about, one provider call
each, and what the provider says moves them through the same machine as a
webhook would (history source `reconcile`). Run periodically by the server
(`maintenance.run_payment_reconcile`) and by `careforall payments reconcile`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.states import PledgeStatus
from careforall.models import Pledge
from careforall.payments.provider import PaymentStates, ProviderUnavailable
from careforall.services.transitions import move_pledge, pledge_to_move
from careforall.services.unit_of_work import UnitOfWork

log = logging.getLogger("careforall.payments")

STUCK = (PledgeStatus.PENDING.value, PledgeStatus.AUTHORIZED.value)
# Pledges older than this are left alone: a donor who started a payment a
# week ago and never finished will not, and asking each run costs a call.
LOOK_BACK = timedelta(days=7)
BATCH = 200


@dataclass(frozen=True)
class Settled:
    """One pledge reconcile moved."""

    pledge_id: str
    from_status: str
    to_status: str


def stuck_pledges(
    db: Database, *, older_than: timedelta, limit: int = BATCH
) -> list[str]:
    """PENDING or AUTHORIZED pledges untouched for `older_than`, oldest first."""
    now = utcnow()
    with db.read() as session:
        return list(
            session.exec(
                select(Pledge.id)
                .where(col(Pledge.status).in_(STUCK))
                .where(col(Pledge.updated_at) < now - older_than)
                .where(col(Pledge.updated_at) >= now - older_than - LOOK_BACK)
                .order_by(col(Pledge.updated_at))
                .limit(limit)
            ).all()
        )


def reconcile_payments(
    db: Database,
    *,
    provider: PaymentStates,
    older_than: timedelta,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Settled]:
    """Ask the provider about each stuck pledge and apply its answer; returns
    the pledges moved. Stops at the first call the provider does not answer
    (the next run carries on)."""
    settled: list[Settled] = []
    for pledge_id in stuck_pledges(db, older_than=older_than):
        if should_stop():
            break
        try:
            state = provider.payment_state(pledge_id=pledge_id)
        except ProviderUnavailable:
            log.warning("payment reconcile stopped: the provider did not answer")
            break
        if state is None:
            continue
        moved = _settle(UnitOfWork(db), pledge_id, state.status, state.reason)
        if moved is not None:
            settled.append(moved)
    if settled:
        log.warning(
            "payments reconciled from the provider",
            extra={"pledges": [s.pledge_id for s in settled]},
        )
    return settled


def _settle(
    uow: UnitOfWork, pledge_id: str, target: PledgeStatus, reason: str | None
) -> Settled | None:
    """Move the pledge towards what the provider said, in one commit; None when
    it was there already (a webhook came meanwhile) or is gone."""
    with uow:
        pledge = pledge_to_move(uow, pledge_id)
        if pledge is None:
            return None
        was = pledge.status
        steps = move_pledge(
            uow, pledge, target, source="reconcile", failure_reason=reason
        )
        if not steps:
            return None
        uow.commit()
    return Settled(pledge_id, was, steps[-1].to_status.value)

"""What each event triggers. Handlers are idempotent: delivery is at least once.

Two kinds, by how they touch the database:
- transactional handlers run inside the dispatcher's transaction, the one that
  also marks the event delivered, so their effect and that record commit
  together (the totals);
- side-effect handlers run first with transactions of their own (auto-capture
  calls the provider); a failure leaves the event to be retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlmodel import Session

from careforall.db import Database
from careforall.domain.events import Event, PledgeStatusChanged, TotalsReconciled
from careforall.domain.states import PledgeStatus
from careforall.models import OutboxEvent
from careforall.payments.provider import PaymentProvider
from careforall.services import alerts, notifications
from careforall.services.payments import auto_capture
from careforall.services.totals import settle_pledge
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings


@dataclass(frozen=True)
class HandlerContext:
    db: Database
    settings: Settings
    provider: PaymentProvider


# Returns the id of a campaign whose totals it changed, or None. It writes
# with Core on the dispatcher's connection: the savepoint that undoes a failed
# event's writes is the connection's, which an ORM session would not see.
TransactionalHandler = Callable[[Connection, Event], str | None]
SideEffectHandler = Callable[[HandlerContext, Event], None]


def update_totals(conn: Connection, event: Event) -> str | None:
    assert isinstance(event, PledgeStatusChanged)
    return settle_pledge(conn, event.pledge_id)


def push_reconciled_totals(conn: Connection, event: Event) -> str | None:
    """Reconcile already repaired the totals: naming the campaign is enough for
    the dispatcher to push them to its subscribers."""
    assert isinstance(event, TotalsReconciled)
    return event.campaign_id


def notify_donor_and_organiser(conn: Connection, event: Event) -> str | None:
    """After update_totals, so a goal reached is seen in the same transaction."""
    assert isinstance(event, PledgeStatusChanged)
    notifications.notify_pledge_status(conn, event)
    return None


def on_dead_letter(
    session: Session, row: OutboxEvent, *, attempts: int, error: str
) -> None:
    """For the dispatcher, in the transaction that parks `row` as a dead letter
    after `attempts` tries: the admins hear of it (rate-limited) exactly when
    the parking commits."""
    assert row.id is not None
    alerts.notify_dead_letter(
        session, event_id=row.id, name=row.name, attempts=attempts, error=error
    )


def capture_after_authorization(ctx: HandlerContext, event: Event) -> None:
    assert isinstance(event, PledgeStatusChanged)
    if ctx.settings.auto_capture and event.to_status == PledgeStatus.AUTHORIZED:
        auto_capture(
            UnitOfWork(ctx.db), provider=ctx.provider, pledge_id=event.pledge_id
        )


TRANSACTIONAL_HANDLERS: dict[type[Event], list[TransactionalHandler]] = {
    PledgeStatusChanged: [update_totals, notify_donor_and_organiser],
    TotalsReconciled: [push_reconciled_totals],
}
SIDE_EFFECT_HANDLERS: dict[type[Event], list[SideEffectHandler]] = {
    PledgeStatusChanged: [capture_after_authorization],
}

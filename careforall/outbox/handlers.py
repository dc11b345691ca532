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

from sqlmodel import Session

from careforall.db import Database
from careforall.domain.events import Event, PledgeStatusChanged
from careforall.domain.states import PledgeStatus
from careforall.payments.provider import PaymentProvider
from careforall.services.payments import auto_capture
from careforall.services.totals import settle_pledge
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings


@dataclass(frozen=True)
class HandlerContext:
    db: Database
    settings: Settings
    provider: PaymentProvider


# Returns the id of a campaign whose totals it changed, or None.
TransactionalHandler = Callable[[Session, Event], str | None]
SideEffectHandler = Callable[[HandlerContext, Event], None]


def update_totals(session: Session, event: Event) -> str | None:
    assert isinstance(event, PledgeStatusChanged)
    return settle_pledge(session, event.pledge_id)


def capture_after_authorization(ctx: HandlerContext, event: Event) -> None:
    assert isinstance(event, PledgeStatusChanged)
    if ctx.settings.auto_capture and event.to_status == PledgeStatus.AUTHORIZED:
        auto_capture(
            UnitOfWork(ctx.db), provider=ctx.provider, pledge_id=event.pledge_id
        )


TRANSACTIONAL_HANDLERS: dict[type[Event], list[TransactionalHandler]] = {
    PledgeStatusChanged: [update_totals],
}
SIDE_EFFECT_HANDLERS: dict[type[Event], list[SideEffectHandler]] = {
    PledgeStatusChanged: [capture_after_authorization],
}

"""Whether everything committed so far has been delivered: no outbox event
pending and no provider webhook owed. One pair of queries, read through the
test's `Database` here and through a server's own file or database by
`Server.settled` (tests/helpers/server.py). And the outbox run in the test's
own process until nothing is due, as the dispatcher's task would, and again."""

from __future__ import annotations

from sqlalchemy import text, update
from sqlmodel import select

from careforall.broadcaster import Broadcaster
from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.models import OutboxEvent
from careforall.outbox.dispatcher import Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.payments.simulated import SimulatedProvider
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings

PENDING_EVENTS = "SELECT count(*) FROM outbox_events WHERE status = 'pending'"
OWED_WEBHOOKS = "SELECT count(*) FROM sim_webhooks WHERE delivered_at IS NULL"


def _count(db: Database, sql: str) -> int:
    with db.read() as session:
        return int(session.execute(text(sql)).scalar_one())


def outbox_drained(db: Database) -> bool:
    """No outbox event waits to be processed."""
    return _count(db, PENDING_EVENTS) == 0


def settled(db: Database) -> bool:
    """No outbox event waits and the provider owes no webhook."""
    return outbox_drained(db) and _count(db, OWED_WEBHOOKS) == 0


def deliver(db: Database, settings: Settings, *, all_succeed: bool = True) -> int:
    """Run the outbox dispatcher until no event is due (captures are left to
    the test: no auto-capture); returns how many ran. Every handler must
    succeed unless `all_succeed=False`."""
    dispatcher = Dispatcher(
        HandlerContext(
            db=db,
            settings=settings.with_(auto_capture=False),
            provider=SimulatedProvider(db),
        ),
        Broadcaster(),
    )
    delivered = 0
    while batch := dispatcher.process_due().processed:
        delivered += batch
    with db.read() as session:
        failed = session.exec(
            select(OutboxEvent.name, OutboxEvent.last_error).where(
                OutboxEvent.status != "done"
            )
        ).all()
    if all_succeed:
        assert not failed, failed  # every handler succeeded, also the second time
    return delivered


def deliver_everything_again(db: Database, settings: Settings) -> int:
    """At-least-once delivery at its worst: every event is delivered again."""
    with UnitOfWork(db) as uow:
        uow.session.execute(
            update(OutboxEvent).values(status="pending", available_at=utcnow())
        )
        uow.commit()
    return deliver(db, settings)

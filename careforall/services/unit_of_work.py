"""The unit of work: one write transaction plus the events it emits.

Events go into `outbox_events` in the same commit as the state change that
caused them, so a crash can lose neither half.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType

from sqlmodel import Session

from careforall import metrics, tracing
from careforall.db import Database
from careforall.domain.events import (
    CampaignStatusChanged,
    Event,
    PledgeCreated,
    PledgeStatusChanged,
)
from careforall.models import OutboxEvent

log = logging.getLogger("careforall.events")


def log_events(events: Sequence[Event]) -> None:
    """One log line per notable committed event."""
    if not log.isEnabledFor(logging.INFO):
        return
    for event in events:
        if isinstance(event, PledgeStatusChanged):
            log.info(
                "pledge status changed",
                extra={
                    "pledge_id": event.pledge_id,
                    "campaign_id": event.campaign_id,
                    "from_status": event.from_status,
                    "to_status": event.to_status,
                    "source": event.source,
                    "amount_cents": event.amount_cents,
                    "currency": event.currency,
                },
            )
        elif isinstance(event, PledgeCreated):
            log.info(
                "pledge created",
                extra={
                    "pledge_id": event.pledge_id,
                    "campaign_id": event.campaign_id,
                    "amount_cents": event.amount_cents,
                    "currency": event.currency,
                },
            )
        elif isinstance(event, CampaignStatusChanged):
            log.info(
                "campaign status changed",
                extra={
                    "campaign_id": event.campaign_id,
                    "from_status": event.from_status,
                    "to_status": event.to_status,
                    "source": event.source,
                },
            )


class UnitOfWork:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._session: Session | None = None
        self._emitted: list[Event] = []

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("use the unit of work inside 'with'")
        return self._session

    def __enter__(self) -> UnitOfWork:
        self._session = self.db.write_session()
        self._emitted = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            # close() rolls back whatever was not committed. rollback() would
            # also expire loaded rows, so a row returned without a commit (an
            # idempotent replay, a no-op move) could no longer be read.
            session.close()
        finally:
            self._session = None

    def emit(self, event: Event) -> None:
        self.session.add(
            OutboxEvent(
                name=event.name,
                payload=event.to_json(),
                # The dispatcher continues this trace when it delivers the event.
                trace_context=tracing.traceparent(),
            )
        )
        self._emitted.append(event)

    def commit(self) -> None:
        self.session.commit()
        if self._emitted:
            emitted, self._emitted = self._emitted, []
            metrics.count_events(emitted)
            log_events(emitted)
            self.db.notify_commit()

    def rollback(self) -> None:
        self.session.rollback()
        self._emitted = []

"""The outbox dispatcher: a lifespan task that delivers committed events.

It wakes as soon as a commit writes events (and on a timer for retries),
claims a batch in id order, runs the handlers, and marks each event done,
retries it later with exponential backoff and jitter, or parks it as a dead
letter after `max_attempts`, without holding up the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from careforall import metrics
from careforall.domain.clock import utcnow
from careforall.domain.events import EVENT_TYPES, Event, load_event
from careforall.models import CampaignTotals, OutboxEvent
from careforall.outbox.broadcaster import Broadcaster
from careforall.outbox.handlers import (
    SIDE_EFFECT_HANDLERS,
    TRANSACTIONAL_HANDLERS,
    HandlerContext,
)
from careforall.services.totals import totals_for

log = logging.getLogger("careforall.outbox")

MAX_DELAY_SECONDS = 300.0
IDLE_WAIT_SECONDS = 5.0


@dataclass
class BatchResult:
    changed_totals: list[CampaignTotals] = field(default_factory=list)
    processed: int = 0
    next_wait: float = IDLE_WAIT_SECONDS


class Dispatcher:
    def __init__(
        self,
        ctx: HandlerContext,
        broadcaster: Broadcaster[CampaignTotals],
        *,
        batch_size: int = 200,
    ) -> None:
        self._ctx = ctx
        self._db = ctx.db
        self._broadcaster = broadcaster
        self._batch_size = batch_size
        self._max_attempts = max(1, ctx.settings.outbox_max_attempts)
        self._base_delay = ctx.settings.outbox_base_delay
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.alive = False
        self.last_beat = 0.0

    def wake(self) -> None:
        """Thread-safe: called after every commit that wrote outbox events."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.alive = True
        try:
            while True:
                self._wake.clear()
                self.last_beat = time.monotonic()
                try:
                    result = await asyncio.to_thread(self.process_due)
                except Exception:
                    # The database may be away for a moment: keep the task alive.
                    log.exception("outbox batch failed; retrying")
                    result = BatchResult(next_wait=1.0)
                for totals in result.changed_totals:
                    self._broadcaster.publish(totals.campaign_id, totals)
                if result.processed >= self._batch_size:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=result.next_wait)
                except TimeoutError:
                    pass
        finally:
            self.alive = False

    def _backoff(self, attempts: int) -> float:
        delay = min(self._base_delay * 2 ** (attempts - 1), MAX_DELAY_SECONDS)
        return float(delay * random.uniform(0.5, 1.5))

    def process_due(self) -> BatchResult:
        """Deliver one batch of due events (blocking; runs in a worker thread)."""
        now = utcnow()
        with self._db.read() as session:
            rows = list(
                session.exec(
                    select(OutboxEvent)
                    .where(OutboxEvent.status == "pending")
                    .where(col(OutboxEvent.available_at) <= now)
                    .order_by(col(OutboxEvent.id))
                    .limit(self._batch_size)
                ).all()
            )
        if not rows:
            return BatchResult(next_wait=self._next_wait())

        errors: dict[int, str] = {}
        events: dict[int, Event] = {}
        for row in rows:
            assert row.id is not None
            if row.name not in EVENT_TYPES:
                errors[row.id] = f"unknown event type {row.name!r}"
                continue
            event = events[row.id] = load_event(row.name, row.payload)
            for side_effect in SIDE_EFFECT_HANDLERS.get(type(event), []):
                try:
                    side_effect(self._ctx, event)
                except Exception as exc:
                    errors[row.id] = (
                        f"{side_effect.__name__}: {type(exc).__name__}: {exc}"
                    )
                    break

        changed: set[str] = set()
        with self._db.write_session() as session:
            for row in rows:
                assert row.id is not None
                event_or_none = events.get(row.id)
                if row.id not in errors and event_or_none is not None:
                    handlers = TRANSACTIONAL_HANDLERS.get(type(event_or_none), [])
                    savepoint = session.begin_nested()
                    try:
                        touched = [h(session, event_or_none) for h in handlers]
                        savepoint.commit()
                        changed.update(t for t in touched if t is not None)
                    except Exception as exc:
                        savepoint.rollback()
                        errors[row.id] = f"{type(exc).__name__}: {exc}"
                self._mark(session, row, errors.get(row.id))
            session.commit()
            fresh = totals_for(session, sorted(changed))
        metrics.OUTBOX_DELIVERED.inc(len(rows) - len(errors))
        return BatchResult(changed_totals=fresh, processed=len(rows), next_wait=0.0)

    def _mark(self, session: Session, row: OutboxEvent, error: str | None) -> None:
        if error is None:
            values: dict[str, object] = {"status": "done", "processed_at": utcnow()}
        else:
            attempts = row.attempts + 1
            if attempts >= self._max_attempts:
                values = {
                    "status": "dead",
                    "attempts": attempts,
                    "last_error": error[:2000],
                }
                metrics.OUTBOX_DEAD_LETTERS.inc()
                log.error(
                    "outbox event parked as a dead letter",
                    extra={
                        "event_id": row.id,
                        "event": row.name,
                        "attempts": attempts,
                        "error": error,
                    },
                )
            else:
                values = {
                    "attempts": attempts,
                    "last_error": error[:2000],
                    "available_at": utcnow()
                    + timedelta(seconds=self._backoff(attempts)),
                }
                metrics.OUTBOX_RETRIES.inc()
                log.warning(
                    "outbox event failed; will retry",
                    extra={
                        "event_id": row.id,
                        "event": row.name,
                        "attempts": attempts,
                        "error": error,
                    },
                )
        session.execute(
            update(OutboxEvent).where(col(OutboxEvent.id) == row.id).values(**values)
        )

    def _next_wait(self) -> float:
        with self._db.read() as session:
            pending, upcoming = session.exec(
                select(func.count(), func.min(OutboxEvent.available_at)).where(
                    OutboxEvent.status == "pending"
                )
            ).one()
        metrics.OUTBOX_PENDING.set(pending)
        if upcoming is None:
            return IDLE_WAIT_SECONDS
        wait = (upcoming - utcnow()).total_seconds()
        return max(0.01, min(wait, IDLE_WAIT_SECONDS))

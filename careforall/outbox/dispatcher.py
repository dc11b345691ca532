"""The outbox dispatcher: a lifespan task that delivers committed events.

It wakes as soon as a commit writes events (and on a timer for retries),
claims a batch in id order, hands each handler all of the batch's events of
its type at once (each event alone when that fails, to find the failing ones),
and marks each event done, retries it later with exponential backoff and
jitter, or parks it as a dead letter after `max_attempts`, without holding up
the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind
from sqlalchemy import bindparam, func, update
from sqlmodel import Session, col, select

from careforall import metrics, tracing
from careforall.concurrency import in_thread
from careforall.db import TOTALS_CHANNEL, TransactionLost, check_still_open
from careforall.domain.clock import utcnow
from careforall.domain.events import EVENT_TYPES, Event, load_event
from careforall.models import CampaignTotals, OutboxEvent, Pledge, table_of
from careforall.outbox.broadcaster import Broadcaster
from careforall.outbox.handlers import (
    SIDE_EFFECT_HANDLERS,
    TRANSACTIONAL_HANDLERS,
    HandlerContext,
    SideEffectHandler,
    TransactionalHandler,
    on_dead_letter,
)
from careforall.services.totals import totals_for

log = logging.getLogger("careforall.outbox")

# A busy dispatcher runs these for every batch: built and compiled once.
_DUE = (
    select(OutboxEvent)
    .where(OutboxEvent.status == "pending")
    .where(col(OutboxEvent.available_at) <= bindparam("now"))
    .order_by(col(OutboxEvent.id))
    .limit(bindparam("limit"))
)
# PostgreSQL: the batch is claimed in the transaction that marks it.
_CLAIM = _DUE.with_for_update(skip_locked=True)
_OUTBOX = table_of(OutboxEvent)
_DELIVERED = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(status="done", processed_at=bindparam("at"))
)


def totals_payload(changed: Mapping[str, Context | None]) -> str:
    """`campaign@traceparent,...`: what the listeners push, in whose trace."""
    return ",".join(
        f"{campaign_id}@{parent}"
        if (parent := tracing.traceparent_of(ctx))
        else campaign_id
        for campaign_id, ctx in changed.items()
    )


def parse_totals_payload(payload: str) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for entry in payload.split(","):
        campaign_id, _, parent = entry.partition("@")
        if campaign_id:
            changes[campaign_id] = parent or None
    return changes


def lock_in_order(session: Session, events: Iterable[Event]) -> None:
    """PostgreSQL: lock the batch's pledges, then their campaigns' totals, each
    in id order, before any handler runs.

    Handlers lock a pledge and then its totals row; two processes doing that
    for different events in different orders could deadlock. Taking every
    lock up front in one order cannot.
    """
    pledge_ids = sorted(
        {pid for e in events if isinstance(pid := getattr(e, "pledge_id", None), str)}
    )
    if not pledge_ids:
        return
    campaign_ids = session.exec(
        select(Pledge.campaign_id)
        .where(col(Pledge.id).in_(pledge_ids))
        .order_by(col(Pledge.id))
        .with_for_update()
    ).all()
    session.exec(
        select(CampaignTotals.campaign_id)
        .where(col(CampaignTotals.campaign_id).in_(sorted(set(campaign_ids))))
        .order_by(col(CampaignTotals.campaign_id))
        .with_for_update()
    ).all()


# An outbox row and its event, grouped by type for the handlers.
_Item = tuple[OutboxEvent, Event]


def _id(item: _Item) -> int:
    row_id = item[0].id
    assert row_id is not None
    return row_id


def _by_type(items: Iterable[_Item]) -> dict[type[Event], list[_Item]]:
    groups: dict[type[Event], list[_Item]] = {}
    for row, event in items:
        groups.setdefault(type(event), []).append((row, event))
    return groups


MAX_DELAY_SECONDS = 300.0
IDLE_WAIT_SECONDS = 5.0
GAUGE_INTERVAL_SECONDS = 1.0


@dataclass
class BatchResult:
    changed_totals: list[CampaignTotals] = field(default_factory=list)
    processed: int = 0
    next_wait: float = IDLE_WAIT_SECONDS
    # campaign id -> the trace that changed its totals (continued by the push)
    traces: dict[str, Context | None] = field(default_factory=dict)


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
        self._gauges_at = 0.0

    def wake(self) -> None:
        """Thread-safe: called after every commit that wrote outbox events."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def push_from_database(self, changes: Mapping[str, str | None] | None) -> None:
        """Push totals that another process (or this one) committed.

        `changes` maps each campaign to the traceparent of the work that changed
        it (None: every campaign watched here). Called by the PostgreSQL
        listener's thread, one notification after the other in commit order;
        each read sees at least what the last one saw, so a subscriber never
        sees totals go back in time.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        watched = set(self._broadcaster.topics())
        if changes is None:
            changes = dict.fromkeys(watched)
        wanted = sorted(set(changes) & watched)
        fresh: dict[str, CampaignTotals] = {}
        if wanted:
            with self._db.read() as session:
                fresh = {t.campaign_id: t for t in totals_for(session, wanted)}
        for campaign_id, parent in changes.items():
            totals = fresh.get(campaign_id)
            if totals is not None or tracing.enabled():
                loop.call_soon_threadsafe(
                    self._push, campaign_id, totals, tracing.context_from(parent)
                )

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.alive = True
        try:
            while True:
                self._wake.clear()
                self.last_beat = time.monotonic()
                try:
                    result = await in_thread(self.process_due)
                except Exception:
                    # The database may be away for a moment: keep the task alive.
                    log.exception("outbox batch failed; retrying")
                    result = BatchResult(next_wait=1.0)
                for totals in result.changed_totals:
                    self._push(
                        totals.campaign_id,
                        totals,
                        result.traces.get(totals.campaign_id),
                    )
                if result.processed >= self._batch_size:
                    continue
                try:
                    # Not asyncio.wait_for: on 3.11 it swallows a cancel that
                    # coincides with a wake-up, and shutdown would wait forever.
                    async with asyncio.timeout(result.next_wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            self.alive = False

    def _push(
        self, campaign_id: str, totals: CampaignTotals | None, parent: Context | None
    ) -> None:
        """Hand `totals` to the campaign's subscribers (None: no one watches)."""

        def publish() -> int:
            if totals is None:
                return 0
            return self._broadcaster.publish(campaign_id, totals)

        if not tracing.enabled():
            publish()
            return
        with tracing.span(
            "subscription push",
            parent=parent,
            kind=SpanKind.PRODUCER,
            attributes={"careforall.campaign_id": campaign_id},
        ) as span:
            span.set_attribute("careforall.subscribers", publish())

    def _backoff(self, attempts: int) -> float:
        delay = min(self._base_delay * 2 ** (attempts - 1), MAX_DELAY_SECONDS)
        return float(delay * random.uniform(0.5, 1.5))

    def process_due(self) -> BatchResult:
        """Deliver one batch of due events (blocking; runs in a worker thread).

        On PostgreSQL the batch is claimed with FOR UPDATE SKIP LOCKED in the
        transaction that marks it, so each event is delivered by one process
        at a time, and the totals changed are announced to every process
        (NOTIFY) rather than pushed from here. On SQLite this process is the
        only one: the batch is read first, and the write lock is taken only
        after the side effects (which write in transactions of their own).
        """
        now = utcnow()
        due = {"now": now, "limit": self._batch_size}
        postgres = self._db.is_postgres
        if not postgres:
            with self._db.read() as reader:
                rows = list(reader.scalars(_DUE, due).all())
                self._refresh_gauges(reader, now, idle=not rows)
        with self._db.write_session() as session:
            if postgres:
                rows = list(session.scalars(_CLAIM, due).all())
                self._refresh_gauges(session, now, idle=not rows)
            if not rows:
                session.rollback()
                return BatchResult(next_wait=self._next_wait())
            # One span per event, continuing the trace of the commit that wrote it.
            spans = {row.id: self._start_span(row) for row in rows}
            events, errors = self._side_effects(rows, spans)
            if postgres:
                self._db.totals_lock(session, exclusive=False)
                lock_in_order(session, events.values())
            changed = self._transactional(session, rows, events, errors, spans)
            if postgres and changed:
                self._db.notify_others(session, TOTALS_CHANNEL, totals_payload(changed))
            # Read before the commit, while this transaction still holds the
            # write lock (no one can change them before it commits); read after
            # it, they would begin a second write transaction and wait for the
            # lock again. Pushed only once the commit is through.
            fresh = [] if postgres else totals_for(session, sorted(changed))
            session.commit()
        self._observe(rows, events, errors, spans)
        return BatchResult(
            changed_totals=fresh,
            processed=len(rows),
            next_wait=0.0,
            traces=changed,
        )

    def _side_effects(
        self, rows: list[OutboxEvent], spans: dict[int | None, Span]
    ) -> tuple[dict[int, Event], dict[int, str]]:
        """Load each event and run its side effects; returns events and errors."""
        errors: dict[int, str] = {}
        events: dict[int, Event] = {}
        loaded: list[_Item] = []
        for row in rows:
            assert row.id is not None
            if row.name not in EVENT_TYPES:
                errors[row.id] = f"unknown event type {row.name!r}"
                continue
            event = events[row.id] = load_event(row.name, row.payload)
            loaded.append((row, event))
            pledge_id = getattr(event, "pledge_id", None)
            if pledge_id is not None and spans[row.id].is_recording():
                spans[row.id].set_attribute("careforall.pledge_id", pledge_id)
        for kind, items in _by_type(loaded).items():
            for handler in SIDE_EFFECT_HANDLERS.get(kind, []):

                def call(
                    group: list[_Item], handler: SideEffectHandler = handler
                ) -> Mapping[int, Exception]:
                    with self._handler_span(handler.__name__) as span:
                        failed = handler(self._ctx, [event for _row, event in group])
                        if failed and span is not None:
                            tracing.fail(span, str(next(iter(failed.values()))))
                    return failed

                waiting = [item for item in items if item[0].id not in errors]
                for row_id, exc in self._deliver(call, waiting, spans).items():
                    errors[row_id] = f"{handler.__name__}: {type(exc).__name__}: {exc}"
        return events, errors

    def _transactional(
        self,
        session: Session,
        rows: list[OutboxEvent],
        events: dict[int, Event],
        errors: dict[int, str],
        spans: dict[int | None, Span],
    ) -> dict[str, Context | None]:
        """Run the transactional handlers (in a savepoint, so a failure undoes
        only its own writes) and mark every row: the delivered ones with one
        UPDATE.

        Returns the campaigns whose totals changed, with the trace that did it.
        """
        changed: dict[str, Context | None] = {}
        ready = [
            (row, events[row.id])
            for row in rows
            if row.id is not None and row.id in events and row.id not in errors
        ]
        # An event without transactional handlers (PledgeCreated) needs no
        # savepoint: it is only marked delivered.
        for kind, items in _by_type(ready).items():
            handlers = TRANSACTIONAL_HANDLERS.get(kind, [])
            if not handlers:
                continue

            def call(
                group: list[_Item], handlers: list[TransactionalHandler] = handlers
            ) -> Mapping[int, Exception]:
                # A savepoint on the connection: the handlers write with Core,
                # and an ORM one costs twice as much for nothing.
                conn = session.connection()
                # SQLite may have ended the batch's transaction by itself (a
                # full disk): a savepoint now would begin one of its own.
                check_still_open(conn)
                touched: dict[str, OutboxEvent] = {}
                with conn.begin_nested():
                    for handler in handlers:
                        with self._handler_span(handler.__name__):
                            moved = handler(conn, [event for _row, event in group])
                        for campaign_id, position in moved.items():
                            touched[campaign_id] = group[position][0]
                for campaign_id, row in touched.items():
                    changed[campaign_id] = tracing.context_of(spans[row.id])
                return {}  # a failure raises: the savepoint undoes all of it

            for row_id, exc in self._deliver(call, items, spans).items():
                errors[row_id] = f"{type(exc).__name__}: {exc}"
        delivered: list[int] = []
        for row in rows:
            assert row.id is not None
            if row.id in errors:
                with tracing.using(spans[row.id]):
                    self._mark_failed(session, row, errors[row.id])
            else:
                delivered.append(row.id)
        if delivered:
            # One statement for the batch: most events only need this.
            session.connection().execute(_DELIVERED, {"ids": delivered, "at": utcnow()})
        return changed

    @staticmethod
    def _deliver(
        call: Callable[[list[_Item]], Mapping[int, Exception]],
        items: list[_Item],
        spans: dict[int | None, Span],
    ) -> dict[int, Exception]:
        """`call` the batch's events together; if that raises, each event
        alone, so that only the failing ones are retried. Returns the errors
        by outbox row id (`call` returns those it knows by position).

        With tracing on, each event goes alone from the start: its handlers'
        spans are then children of its own span, in its own trace.
        """
        if len(items) > 1 and not tracing.enabled():
            try:
                failed = call(items)
            except TransactionLost:
                raise  # nothing of the batch can be written: it is retried whole
            except Exception:
                # Correct either way, but one event at a time is slow: a batch
                # that always fails (a bug) must be seen.
                metrics.OUTBOX_BATCH_FALLBACKS.inc()
                log.warning(
                    "outbox batch failed; delivering its events one at a time",
                    extra={"events": len(items)},
                    exc_info=True,
                )
            else:
                return {_id(items[position]): exc for position, exc in failed.items()}
        errors: dict[int, Exception] = {}
        for row, event in items:
            try:
                with tracing.using(spans[row.id]):
                    failed = call([(row, event)])
            except TransactionLost:
                raise
            except Exception as exc:
                errors[_id((row, event))] = exc
            else:
                if failed:
                    errors[_id((row, event))] = next(iter(failed.values()))
        return errors

    @staticmethod
    def _handler_span(name: str) -> AbstractContextManager[Span | None]:
        if not tracing.enabled():
            return nullcontext()
        return tracing.span(f"handler {name}")

    @staticmethod
    def _start_span(row: OutboxEvent) -> Span:
        if not tracing.enabled():
            return INVALID_SPAN
        return tracing.start_span(
            f"outbox {row.name}",
            parent=tracing.context_from(row.trace_context),
            kind=SpanKind.CONSUMER,
            attributes={
                "careforall.outbox.event_id": row.id or 0,
                "careforall.outbox.attempt": row.attempts + 1,
            },
        )

    def _observe(
        self,
        rows: list[OutboxEvent],
        events: dict[int, Event],
        errors: dict[int, str],
        spans: dict[int | None, Span],
    ) -> None:
        """Metrics and span ends for a committed batch."""
        done = utcnow()
        delivered = 0
        for row in rows:
            assert row.id is not None
            span = spans[row.id]
            error = errors.get(row.id)
            if error is None:
                delivered += 1
                lag = max(0.0, (done - row.created_at).total_seconds())
                metrics.OUTBOX_DISPATCH_LATENCY.observe(lag)
                event = events.get(row.id)
                if event is not None and TRANSACTIONAL_HANDLERS.get(type(event)):
                    metrics.TOTALS_LAG.observe(lag)
            else:
                tracing.fail(span, error)
            span.end()
        metrics.OUTBOX_DELIVERED.inc(delivered)

    def _refresh_gauges(self, session: Session, now: datetime, *, idle: bool) -> None:
        """Pending events, the oldest one's age, and dead letters (one query).

        While batches follow each other, at most once a second (the query
        was a fifth of a busy dispatcher's time); at every idle look, so the
        gauges settle on the truth as soon as the work is done.
        """
        clock = time.monotonic()
        if not idle and clock - self._gauges_at < GAUGE_INTERVAL_SECONDS:
            return
        self._gauges_at = clock
        counts = {
            status: (count, oldest)
            for status, count, oldest in session.exec(
                select(
                    OutboxEvent.status, func.count(), func.min(OutboxEvent.created_at)
                )
                .where(col(OutboxEvent.status).in_(("pending", "dead")))
                .group_by(OutboxEvent.status)
            ).all()
        }
        pending, oldest = counts.get("pending", (0, None))
        metrics.OUTBOX_PENDING.set(pending)
        metrics.OUTBOX_DEAD.set(counts.get("dead", (0, None))[0])
        lag = (now - oldest).total_seconds() if oldest is not None else 0.0
        metrics.OUTBOX_LAG.set(max(0.0, lag))

    def _mark_failed(self, session: Session, row: OutboxEvent, error: str) -> None:
        """Retry `row` later with backoff, or park it as a dead letter."""
        attempts = row.attempts + 1
        values: dict[str, object]
        if attempts >= self._max_attempts:
            values = {
                "status": "dead",
                "attempts": attempts,
                "last_error": error[:2000],
            }
            metrics.OUTBOX_DEAD_LETTERS.inc()
            # The admins hear of it in the commit that parks it.
            on_dead_letter(session, row, attempts=attempts, error=error)
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
                "available_at": utcnow() + timedelta(seconds=self._backoff(attempts)),
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
            upcoming = session.exec(
                select(func.min(OutboxEvent.available_at)).where(
                    OutboxEvent.status == "pending"
                )
            ).one()
        if upcoming is None:
            return IDLE_WAIT_SECONDS
        wait = (upcoming - utcnow()).total_seconds()
        return max(0.01, min(wait, IDLE_WAIT_SECONDS))

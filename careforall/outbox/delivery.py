"""Delivering one claimed batch of outbox events to their handlers.

Each handler receives all of the batch's events of its type at once (each
event alone when that fails, to find the failing ones). Side-effect handlers
run first, in transactions of their own; transactional handlers then run in
the dispatcher's transaction, in a savepoint, and every event is marked in
that same transaction: delivered, retried later with exponential backoff and
jitter, or parked as a dead letter after `max_attempts`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta

from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind
from sqlmodel import Session

from careforall import metrics, tracing
from careforall.domain.clock import utcnow
from careforall.domain.events import EVENT_TYPES, Event, load_event
from careforall.models import OutboxEvent
from careforall.outbox.handlers import (
    SIDE_EFFECT_HANDLERS,
    TRANSACTIONAL_HANDLERS,
    HandlerContext,
    SideEffectHandler,
    TransactionalHandler,
    on_dead_letter,
    transactional_handlers,
)
from careforall.services import outbox
from careforall.sqlite import TransactionLost, check_still_open

log = logging.getLogger("careforall.outbox")

MAX_DELAY_SECONDS = 300.0

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


class Delivery:
    """How a batch's events reach their handlers and how each is marked."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx
        self.max_attempts = max(1, ctx.settings.outbox_max_attempts)
        self.base_delay = ctx.settings.outbox_base_delay

    def writes_only_outbox(self, events: Iterable[Event]) -> bool:
        """Whether delivering `events` writes nothing but their outbox rows:
        no transactional handler takes them (a campaign's status change, whose
        handler calls out), so its commit changes no public answer."""
        return not any(transactional_handlers(self.ctx, type(e)) for e in events)

    def side_effects(
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
                    with handler_span(handler.__name__) as span:
                        failed = handler(self.ctx, [event for _row, event in group])
                        if failed and span is not None:
                            tracing.fail(span, str(next(iter(failed.values()))))
                    return failed

                waiting = [item for item in items if item[0].id not in errors]
                for row_id, exc in deliver(call, waiting, spans).items():
                    errors[row_id] = f"{handler.__name__}: {type(exc).__name__}: {exc}"
        return events, errors

    def transactional(
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
        # An event without transactional handlers (its side effects ran
        # above) needs no savepoint: it is only marked delivered.
        for kind, items in _by_type(ready).items():
            handlers = transactional_handlers(self.ctx, kind)
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
                        with handler_span(handler.__name__):
                            moved = handler(conn, [event for _row, event in group])
                        for campaign_id, position in moved.items():
                            touched[campaign_id] = group[position][0]
                for campaign_id, row in touched.items():
                    changed[campaign_id] = tracing.context_of(spans[row.id])
                return {}  # a failure raises: the savepoint undoes all of it

            for row_id, exc in deliver(call, items, spans).items():
                errors[row_id] = f"{type(exc).__name__}: {exc}"
        delivered: list[int] = []
        for row in rows:
            assert row.id is not None
            if row.id in errors:
                with tracing.using(spans[row.id]):
                    self.mark_failed(session, row, errors[row.id])
            else:
                delivered.append(row.id)
        outbox.mark_delivered(session.connection(), delivered, at=utcnow())
        return changed

    def observe(
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

    def mark_failed(self, session: Session, row: OutboxEvent, error: str) -> None:
        """Retry `row` later with backoff, or park it as a dead letter."""
        assert row.id is not None
        attempts = row.attempts + 1
        extra = {"event_id": row.id, "event": row.name, "attempts": attempts}
        if attempts >= self.max_attempts:
            outbox.mark_failed(
                session, row.id, attempts=attempts, error=error, retry_at=None
            )
            metrics.OUTBOX_DEAD_LETTERS.inc()
            # The admins hear of it in the commit that parks it.
            on_dead_letter(session, row, attempts=attempts, error=error)
            log.error(
                "outbox event parked as a dead letter", extra={**extra, "error": error}
            )
            return
        retry_at = utcnow() + timedelta(seconds=self.backoff(attempts))
        outbox.mark_failed(
            session, row.id, attempts=attempts, error=error, retry_at=retry_at
        )
        metrics.OUTBOX_RETRIES.inc()
        log.warning("outbox event failed; will retry", extra={**extra, "error": error})

    def backoff(self, attempts: int) -> float:
        delay = min(self.base_delay * 2 ** (attempts - 1), MAX_DELAY_SECONDS)
        return float(delay * random.uniform(0.5, 1.5))


def deliver(
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


def handler_span(name: str) -> AbstractContextManager[Span | None]:
    if not tracing.enabled():
        return nullcontext()
    return tracing.span(f"handler {name}")


def start_span(row: OutboxEvent) -> Span:
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

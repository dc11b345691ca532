"""The outbox dispatcher: a lifespan task that delivers committed events.

It wakes as soon as a commit writes events (and on a timer for retries),
claims a batch in id order, has it delivered (outbox/delivery.py) in one
write transaction, and pushes the totals that batch changed to their
subscribers once it has committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind
from sqlmodel import Session

from careforall import metrics, tracing
from careforall.broadcaster import Broadcaster
from careforall.concurrency import in_thread
from careforall.db import TOTALS_CHANNEL
from careforall.domain.clock import utcnow
from careforall.domain.events import Event
from careforall.models import OutboxEvent
from careforall.outbox.delivery import Delivery, start_span
from careforall.outbox.handlers import (
    HandlerContext,
    has_side_effects,
    leaves_mails,
    queues_mail,
)
from careforall.outbox.listener import totals_payload
from careforall.services import outbox
from careforall.services.totals import TotalsFigures, lock_for_settling, read_totals

log = logging.getLogger("careforall.outbox")

IDLE_WAIT_SECONDS = 5.0
GAUGE_INTERVAL_SECONDS = 1.0
# SQLite with several processes: how long a claimed batch is this process's.
# A batch's side effects take well under a second; one that ran past the
# lease is left to the process that took it over.
LEASE_SECONDS = 60.0


@dataclass
class BatchResult:
    changed_totals: list[TotalsFigures] = field(default_factory=list)
    processed: int = 0
    next_wait: float = IDLE_WAIT_SECONDS
    # campaign id -> the trace that changed its totals (continued by the push)
    traces: dict[str, Context | None] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        ctx: HandlerContext,
        broadcaster: Broadcaster[TotalsFigures],
        *,
        batch_size: int = 200,
    ) -> None:
        self._db = ctx.db
        self._delivery = Delivery(ctx)
        self._broadcaster = broadcaster
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.alive = False
        self.last_beat = 0.0
        self._gauges_at = 0.0
        # SQLite served by several processes: batches are leased, and the
        # totals a batch changed reach every process's subscribers through
        # the change feed (`settled` is called after such a commit).
        self._leases = self._db.shared and not self._db.is_postgres
        self.settled: Callable[[], None] | None = None
        # The figures last pushed from the database, by watched campaign: a
        # look at every campaign (`changes` None) pushes only what moved.
        self._pushed: dict[str, TotalsFigures] = {}

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
        sees totals go back in time. Also called by SQLite's change feed
        (`changes` None after any commit): then only figures that differ
        from the last ones pushed go out.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        watched = set(self._broadcaster.topics())
        anything = changes is None
        if changes is None:
            changes = dict.fromkeys(watched)
        wanted = sorted(set(changes) & watched)
        fresh: dict[str, TotalsFigures] = {}
        if wanted:
            with self._db.read() as session:
                fresh = read_totals(session, wanted)
        for gone in self._pushed.keys() - watched:
            del self._pushed[gone]
        for campaign_id, parent in changes.items():
            totals = fresh.get(campaign_id)
            if totals is not None:
                if anything and self._pushed.get(campaign_id) == totals:
                    continue
                self._pushed[campaign_id] = totals
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
        self, campaign_id: str, totals: TotalsFigures | None, parent: Context | None
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

    def process_due(self) -> BatchResult:
        """Deliver one batch of due events (blocking; runs in a worker thread).

        On PostgreSQL the batch is claimed with FOR UPDATE SKIP LOCKED in the
        transaction that marks it, so each event is delivered by one process
        at a time, and the totals changed are announced to every process
        (NOTIFY) rather than pushed from here. On SQLite the write lock is
        taken only after the side effects (which write in transactions of
        their own): with one process the batch is simply read first. With
        several (see `_take`), a batch with side effects is leased first
        (`outbox.lease`) and only the events still held are delivered; one
        without is read again under the write lock, which keeps the other
        processes out until it commits. The change feed pushes their totals.
        """
        now = utcnow()
        postgres = self._db.is_postgres
        rows, until, under_lock = ([], None, False) if postgres else self._take(now)
        with self._db.write_session() as session:
            if postgres:
                rows = self._due(session, now, claim=True)
            elif under_lock:
                rows = [
                    row
                    for row in outbox.due(
                        session, now=now, limit=self._batch_size, claim=False
                    )
                    if not has_side_effects(row.name)
                ]
            if not rows:
                session.rollback()
                return BatchResult(next_wait=self._next_wait())
            delivery = self._delivery
            # One span per event, continuing the trace of the commit that wrote it.
            spans = {row.id: start_span(row) for row in rows}
            events, errors = delivery.side_effects(rows, spans)
            if until is not None:
                rows = self._still_held(session, rows, until, spans)
            if postgres:
                self._db.totals_lock(session, exclusive=False)
                lock_for_settling(session, _pledge_ids(events.values()))
            changed = delivery.transactional(session, rows, events, errors, spans)
            if postgres and changed:
                self._db.notify_others(session, TOTALS_CHANNEL, totals_payload(changed))
            # Read before the commit, while this transaction still holds the
            # write lock (no one can change them before it commits); read after
            # it, they would begin a second write transaction and wait for the
            # lock again. Pushed only once the commit is through.
            fresh = (
                []
                if self._db.shared
                else list(read_totals(session, sorted(changed)).values())
            )
            if delivery.writes_only_outbox(events.values()):
                # New pledges arriving: the response cache's answers stay.
                self._db.keep_answers(session.connection())
            session.commit()
        if changed and self._leases and self.settled is not None:
            self.settled()
        if queues_mail(events.values()):
            self._db.mail_queued()
        if leaves_mails(events.values()):
            self._db.mails_to_write()
        delivery.observe(rows, events, errors, spans)
        return BatchResult(
            changed_totals=fresh,
            processed=len(rows),
            next_wait=0.0,
            traces=changed,
        )

    def _due(
        self, session: Session, now: datetime, *, claim: bool
    ) -> list[OutboxEvent]:
        rows = outbox.due(session, now=now, limit=self._batch_size, claim=claim)
        self._refresh_gauges(session, now, idle=not rows)
        return rows

    def _take(self, now: datetime) -> tuple[list[OutboxEvent], datetime | None, bool]:
        """SQLite: the batch read, and with several processes, how this one
        takes it: (rows, the lease's end, whether to read them again under
        the write lock). A batch whose events have no side effects (new
        pledges under load) needs no lease, and so no second commit."""
        with self._db.read() as reader:
            rows = self._due(reader, now, claim=False)
        if not self._leases or not rows:
            return rows, None, False
        if not any(has_side_effects(row.name) for row in rows):
            return rows, None, True
        until = now + timedelta(seconds=LEASE_SECONDS)
        with self._db.write_session() as session:
            rows = outbox.lease(session, now=now, limit=self._batch_size, until=until)
            session.commit()
        return rows, until, False

    def _still_held(
        self,
        session: Session,
        rows: list[OutboxEvent],
        until: datetime,
        spans: dict[int | None, Span],
    ) -> list[OutboxEvent]:
        """The leased rows this process still holds (in the write transaction
        that delivers them); a lease that ran out during the side effects
        belongs to whichever process took the events over."""
        held = outbox.still_held(
            session, [row.id for row in rows if row.id is not None], until=until
        )
        if len(held) < len(rows):
            log.warning(
                "outbox lease ran out before delivery; left to another process",
                extra={"events": len(rows) - len(held)},
            )
        for row in rows:
            if row.id not in held:
                spans.pop(row.id).end()
        return [row for row in rows if row.id in held]

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
        counts = outbox.counts(session)
        metrics.OUTBOX_PENDING.set(counts.pending)
        metrics.OUTBOX_DEAD.set(counts.dead)
        metrics.OUTBOX_LAG.set(counts.lag_seconds(now))

    def _next_wait(self) -> float:
        with self._db.read() as session:
            upcoming = outbox.next_due_at(session)
        if upcoming is None:
            return IDLE_WAIT_SECONDS
        wait = (upcoming - utcnow()).total_seconds()
        return max(0.01, min(wait, IDLE_WAIT_SECONDS))


def _pledge_ids(events: Iterable[Event]) -> list[str]:
    return [
        pid for e in events if isinstance(pid := getattr(e, "pledge_id", None), str)
    ]

"""The outbox table: the one module that reads and writes `outbox_events`.

The unit of work appends events in the commit of their state change; the
dispatcher claims the due ones and marks each delivered, retried later or
dead; admins count, list and requeue dead letters; retention prunes the
delivered ones. Each of them comes here, so the statuses and the statements
that use them live in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, Connection, bindparam, func, insert, update
from sqlmodel import Session, col, select

from careforall.direct import Direct
from careforall.domain.events import Event
from careforall.models import OutboxEvent, table_of

# What the dispatcher keeps of a failure's message.
ERROR_LIMIT = 2000


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next delivery
    DONE = "done"  # delivered; pruned by retention after a while
    DEAD = "dead"  # parked after its last try, until an admin replays it


_TABLE = table_of(OutboxEvent)
_PENDING = OutboxStatus.PENDING.value
_DONE = OutboxStatus.DONE.value
# One INSERT for a commit's events, no ORM object to build and flush (a
# quarter of a pledge's write cost); the ids follow the order of the events.
_APPEND = Direct(insert(_TABLE))
# A busy dispatcher runs these for every batch: built and compiled once.
_DUE = (
    select(OutboxEvent)
    .where(OutboxEvent.status == OutboxStatus.PENDING)
    .where(col(OutboxEvent.available_at) <= bindparam("now"))
    .order_by(col(OutboxEvent.id))
    .limit(bindparam("limit"))
)
# PostgreSQL: the batch is claimed in the transaction that marks it.
_CLAIM = _DUE.with_for_update(skip_locked=True)
_DELIVERED = (
    update(_TABLE)
    .where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))
    .values(status=OutboxStatus.DONE.value, processed_at=bindparam("at"))
)


def append(
    conn: Connection,
    events: Sequence[Event],
    *,
    now: datetime,
    trace_context: str | None,
) -> None:
    """Write `events`, in this order, as rows of the caller's transaction:
    pending, or delivered already when nothing reacts to them (`record_only`)."""
    _APPEND.run_many(
        conn,
        [
            {
                "name": event.name,
                "payload": event.to_json(),
                "status": _DONE if event.record_only else _PENDING,
                "attempts": 0,
                "created_at": now,
                "available_at": now,
                "processed_at": now if event.record_only else None,
                "trace_context": trace_context,
            }
            for event in events
        ],
    )


def any_due(events: Iterable[Event]) -> bool:
    """Whether any of `events` waits for the dispatcher (is not record-only)."""
    return any(not event.record_only for event in events)


def due(
    session: Session, *, now: datetime, limit: int, claim: bool
) -> list[OutboxEvent]:
    """Up to `limit` pending events whose time has come, oldest first;
    `claim` locks them (skipping those another process holds) until commit."""
    params = {"now": now, "limit": limit}
    return list(session.scalars(_CLAIM if claim else _DUE, params).all())


def lease(
    session: Session, *, now: datetime, limit: int, until: datetime
) -> list[OutboxEvent]:
    """SQLite with several processes: up to `limit` due events, held for this
    one until `until` (their `available_at`), in the caller's write
    transaction, which keeps the other processes out until it commits. A
    process that dies holding them leaves them to the others then."""
    rows = due(session, now=now, limit=limit, claim=False)
    if rows:
        ids = [row.id for row in rows]
        session.execute(
            update(OutboxEvent)
            .where(col(OutboxEvent.id).in_(ids))
            .values(available_at=until)
        )
    return rows


def still_held(session: Session, ids: Sequence[int], *, until: datetime) -> set[int]:
    """Which of the events leased until `until` are still this process's:
    pending, with the lease as it was written (one that ran out may have
    been taken by another process, whose delivery it is now)."""
    if not ids:
        return set()
    held = session.exec(
        select(OutboxEvent.id).where(
            col(OutboxEvent.id).in_(list(ids)),
            OutboxEvent.status == OutboxStatus.PENDING,
            OutboxEvent.available_at == until,
        )
    ).all()
    return {int(i) for i in held if i is not None}


def mark_delivered(conn: Connection, ids: Sequence[int], *, at: datetime) -> None:
    """One statement for a batch's delivered events: most only need this."""
    if ids:
        conn.execute(_DELIVERED, {"ids": list(ids), "at": at})


def mark_failed(
    session: Session,
    row_id: int,
    *,
    attempts: int,
    error: str,
    retry_at: datetime | None,
) -> None:
    """A failed try: pending again from `retry_at`, or dead when that is None."""
    values: dict[str, object] = {
        "attempts": attempts,
        "last_error": error[:ERROR_LIMIT],
    }
    if retry_at is None:
        values["status"] = OutboxStatus.DEAD.value
    else:
        values["available_at"] = retry_at
    session.execute(
        update(OutboxEvent).where(col(OutboxEvent.id) == row_id).values(**values)
    )


def next_due_at(session: Session) -> datetime | None:
    """When the earliest pending event is due (None: nothing pending)."""
    return session.exec(
        select(func.min(OutboxEvent.available_at)).where(
            OutboxEvent.status == OutboxStatus.PENDING
        )
    ).one()


_WAITING = (OutboxStatus.PENDING.value, OutboxStatus.DEAD.value)


@dataclass(frozen=True)
class OutboxCounts:
    pending: int
    oldest_pending_at: datetime | None
    dead: int

    def lag_seconds(self, now: datetime) -> float:
        """How long the oldest pending event has waited."""
        if self.oldest_pending_at is None:
            return 0.0
        return max(0.0, (now - self.oldest_pending_at).total_seconds())


def counts(session: Session) -> OutboxCounts:
    """Pending events, the oldest one's creation, and dead letters (one query)."""
    found = {
        status: (count, oldest)
        for status, count, oldest in session.exec(
            select(OutboxEvent.status, func.count(), func.min(OutboxEvent.created_at))
            .where(col(OutboxEvent.status).in_(_WAITING))
            .group_by(OutboxEvent.status)
        ).all()
    }
    pending, oldest = found.get(OutboxStatus.PENDING, (0, None))
    dead, _ = found.get(OutboxStatus.DEAD, (0, None))
    return OutboxCounts(pending=int(pending), oldest_pending_at=oldest, dead=int(dead))


def dead_letters(
    session: Session, *, first: int, before_id: int | None
) -> Sequence[OutboxEvent]:
    """Up to `first` dead letters below `before_id`, newest first."""
    query = select(OutboxEvent).where(OutboxEvent.status == OutboxStatus.DEAD)
    if before_id is not None:
        query = query.where(col(OutboxEvent.id) < before_id)
    return session.exec(query.order_by(col(OutboxEvent.id).desc()).limit(first)).all()


def dead_ids(session: Session) -> list[int]:
    """Every dead letter's id, oldest first."""
    rows = session.exec(
        select(OutboxEvent.id)
        .where(OutboxEvent.status == OutboxStatus.DEAD)
        .order_by(col(OutboxEvent.id))
    ).all()
    return [int(i) for i in rows if i is not None]


def requeue_dead(session: Session, *, now: datetime, row_id: int | None = None) -> int:
    """Dead letters (one, or all) go back to pending with fresh attempts;
    returns how many (0 when that one is no longer dead)."""
    conditions: list[ColumnElement[bool]] = [
        col(OutboxEvent.status) == OutboxStatus.DEAD.value
    ]
    if row_id is not None:
        conditions.append(col(OutboxEvent.id) == row_id)
    result = session.execute(
        update(OutboxEvent)
        .where(*conditions)
        .values(status=OutboxStatus.PENDING.value, attempts=0, available_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def delivered_before(cutoff: datetime, in_delete: bool) -> list[ColumnElement[bool]]:
    """Retention's test for an event it may delete: delivered before `cutoff`."""
    # In the delete, `status || ''`: compared as written, status would make the
    # planner walk the status index over every delivered event instead of
    # looking the ids up by primary key.
    status = col(OutboxEvent.status)
    return [
        (status.concat("") if in_delete else status) == OutboxStatus.DONE.value,
        col(OutboxEvent.processed_at) < cutoff,
    ]

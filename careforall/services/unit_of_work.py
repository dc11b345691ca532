"""The unit of work: one write transaction plus the events it emits.

Events go into `outbox_events` in the same commit as the state change that
caused them, so a crash can lose neither half.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType

from sqlalchemy import Connection, Transaction
from sqlmodel import Session

from careforall import metrics, tracing
from careforall.db import OUTBOX_CHANNEL, Database
from careforall.domain.clock import utcnow
from careforall.domain.events import (
    CampaignReported,
    CampaignStatusChanged,
    Event,
    PayoutRecorded,
    PledgeCreated,
    PledgeStatusChanged,
)
from careforall.logs import log_line
from careforall.services import outbox

log = logging.getLogger("careforall.events")


# The committed events worth a log line each, with their fields as its values
# (not a review's: its note may speak of someone's health).
_LOGGED: dict[type[Event], str] = {
    PledgeCreated: "pledge created",
    PledgeStatusChanged: "pledge status changed",
    CampaignStatusChanged: "campaign status changed",
    PayoutRecorded: "payout recorded",
    CampaignReported: "campaign reported",
}


def log_events(events: Sequence[Event]) -> None:
    """One log line per notable committed event."""
    if not log.isEnabledFor(logging.INFO):
        return
    for event in events:
        message = _LOGGED.get(type(event))
        if message is not None:
            log_line(log, logging.INFO, message, vars(event))


def publish(db: Database, events: Sequence[Event]) -> None:
    """What follows a commit that wrote events: metrics, logs, the dispatcher."""
    metrics.count_events(events)
    log_events(events)
    db.notify_commit(events_due=outbox.any_due(events))


class SharedTransaction:
    """One write transaction that several units of work join (group commit).

    Each unit of work writes in a SAVEPOINT of its own on `connection`: its
    commit() releases the savepoint and its rollback() undoes only its own
    writes. Their events wait in `events` until the owner really commits.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.events: list[Event] = []
        # Whether a unit of work committed writes a public answer may read
        # (its owner tells the database before the real commit).
        self.changes_answers = False

    def session(self) -> Session:
        return Session(
            bind=self.connection,
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
        )


class UnitOfWork:
    """A use case's transaction: `session` (the ORM) or `connection` (Core).

    Alone, it is a write session of its own. Joining a shared transaction
    (the group-commit writer), a service that only runs Core statements on
    `connection` writes in a savepoint of the unit's own, with no ORM
    session: a Session's transaction machinery around each savepoint cost
    about five times the savepoint, on every createPledge. `session` is
    made when first used, in a savepoint of its own inside the unit's (if
    one is open), so commit() and rollback() take both.
    """

    def __init__(
        self, db: Database, *, shared: SharedTransaction | None = None
    ) -> None:
        self.db = db
        self.shared = shared
        self._entered = False
        self._session: Session | None = None
        # Shared only: the unit's own savepoint, opened by `connection`.
        self._savepoint: Transaction | None = None
        self._emitted: list[Event] = []
        self._keeps_answers = False

    @property
    def session(self) -> Session:
        if not self._entered:
            raise RuntimeError("use the unit of work inside 'with'")
        if self._session is None:
            assert self.shared is not None  # alone, made on entering
            self._session = self.shared.session()
        return self._session

    @property
    def connection(self) -> Connection:
        """The connection to run Core statements on, in this unit's transaction."""
        if self.shared is None or self._session is not None:
            return self.session.connection()
        if not self._entered:
            raise RuntimeError("use the unit of work inside 'with'")
        if self._savepoint is None or not self._savepoint.is_active:
            self._savepoint = self.shared.connection.begin_nested()
        return self.shared.connection

    def __enter__(self) -> UnitOfWork:
        if self.shared is None:
            self._session = self.db.write_session()
        self._entered = True
        self._emitted = []
        self._keeps_answers = False
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, savepoint = self._session, self._savepoint
        self._session = self._savepoint = None
        self._entered = False
        try:
            # close() rolls back whatever was not committed. rollback() would
            # also expire loaded rows, so a row returned without a commit (an
            # idempotent replay, a no-op move) could no longer be read.
            if session is not None:
                session.close()
        finally:
            # The session's savepoint (inside this one) is gone first.
            if savepoint is not None and savepoint.is_active:
                savepoint.rollback()

    def emit(self, event: Event) -> None:
        self.emit_all((event,))

    def emit_all(self, events: Sequence[Event]) -> None:
        """Write `events` to the outbox, in this order, with one statement."""
        if not events:
            return
        connection = self.connection
        if outbox.any_due(events) and not outbox.any_due(self._emitted):
            # PostgreSQL: wakes the dispatchers of the other processes too
            # (once a transaction, when it first writes an event to deliver).
            self.db.notify_others(connection, OUTBOX_CHANNEL)
        # The dispatcher continues this trace when it delivers the events.
        outbox.append(
            connection,
            events,
            now=utcnow(),
            trace_context=tracing.traceparent(),
        )
        self._emitted.extend(events)

    def keep_answers(self) -> None:
        """What this unit commits changes no answer to a public query
        (`Database.keep_answers`): the response cache's answers stay current."""
        self._keeps_answers = True

    def commit(self) -> None:
        if not self._entered:
            raise RuntimeError("use the unit of work inside 'with'")
        if self.shared is not None:
            if not self._keeps_answers:
                self.shared.changes_answers = True
        elif self._keeps_answers:
            self.db.keep_answers(self.session.connection())
        if self._session is not None:
            self._session.commit()
        if self._savepoint is not None and self._savepoint.is_active:
            self._savepoint.commit()
        if self._emitted:
            emitted, self._emitted = self._emitted, []
            if self.shared is not None:
                # Only a savepoint was released: published after the real commit.
                self.shared.events.extend(emitted)
            else:
                publish(self.db, emitted)

    def rollback(self) -> None:
        if not self._entered:
            raise RuntimeError("use the unit of work inside 'with'")
        if self._session is not None:
            self._session.rollback()
        if self._savepoint is not None and self._savepoint.is_active:
            self._savepoint.rollback()
        self._emitted = []

"""The mails waiting to be sent, what became of each try, and the admins'
view: every mail newest first, and sending a dead or kept one again.

The sender (`outbox/mailer.py`) takes the due mails, sends them outside any
transaction, then records each outcome here: sent, tried again later with
backoff, or dead when the server refused it for good.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, func, select
from sqlmodel.sql.expression import SelectOfScalar

from careforall import metrics
from careforall.db import Database, lease_due
from careforall.domain.clock import utcnow
from careforall.domain.rules import Principal, require_admin
from careforall.models import Mail
from careforall.services import audit
from careforall.services.admin import row_by_id
from careforall.services.mails import MailStatus, mail_counts
from careforall.services.pagination import Page, newest_by_int_id
from careforall.services.unit_of_work import UnitOfWork

BATCH = 20
LEASE_SECONDS = 60.0
MAX_DELAY_SECONDS = 600.0
# The sender is woken when mails are queued in this process (`db.mail_queued`);
# this slow look is for those queued by another process (PostgreSQL).
IDLE_WAIT_SECONDS = 15.0
# However soon a retry is due, the sender waits at least this long.
MIN_WAIT_SECONDS = 0.05


@dataclass(frozen=True)
class Outcome:
    """One try: `error` None when sent; `refused` when refused for good."""

    mail_id: int
    error: str | None = None
    refused: bool = False


@dataclass(frozen=True)
class Taken:
    """A round's mails, how long to wait before the next look, and the lease
    this process holds on them (PostgreSQL: the `next_attempt_at` it set;
    None on SQLite, where this process is the only sender)."""

    rows: list[Mail]
    wait: float
    lease: datetime | None = None


def _due_query(now: datetime, skip: Collection[int]) -> SelectOfScalar[Mail]:
    query = (
        select(Mail)
        .where(Mail.status == MailStatus.QUEUED)
        .where(col(Mail.next_attempt_at) <= now)
    )
    if skip:
        query = query.where(col(Mail.id).not_in(list(skip)))
    return query.order_by(col(Mail.id)).limit(BATCH)


def take_due(db: Database, *, skip: Collection[int] = ()) -> Taken:
    """The mails due now (less `skip`: sent, their outcome not yet recorded),
    and how long to wait before looking again: none after a full batch, else
    until the next retry is due, at most IDLE_WAIT_SECONDS (a mail queued
    meanwhile wakes the sender).

    One server process (SQLite without --workers) reads them. Where several
    processes send (PostgreSQL, SQLite's workers), each leases the rows it
    takes for LEASE_SECONDS (a sender that dies mid-send leaves them to the
    others)."""
    now = utcnow()
    lease = None
    if not db.shared:  # one process: a read, without the write lock
        with db.read() as session:
            rows = list(session.exec(_due_query(now, skip)).all())
    else:
        lease = now + timedelta(seconds=LEASE_SECONDS)
        rows = lease_due(db, _due_query(now, skip), lease)
    wait = 0.0 if len(rows) == BATCH else _until_next_retry(db, now)
    return Taken(rows, wait, lease if rows else None)


def _until_next_retry(db: Database, now: datetime) -> float:
    """Seconds until the soonest queued mail is due, within the bounds."""
    with db.read() as session:
        soonest = session.exec(
            select(func.min(Mail.next_attempt_at)).where(
                Mail.status == MailStatus.QUEUED, col(Mail.next_attempt_at) > now
            )
        ).one()
    if soonest is None:
        return IDLE_WAIT_SECONDS
    wait = (soonest - now).total_seconds()
    return max(MIN_WAIT_SECONDS, min(wait, IDLE_WAIT_SECONDS))


def release_kept(db: Database) -> int:
    """Queue every mail kept while no SMTP server was configured (at the start
    of a sender, which has one); returns how many."""
    with db.write_session() as session:
        result = session.execute(
            update(Mail)
            .where(col(Mail.status) == MailStatus.KEPT)
            .values(status=MailStatus.QUEUED, next_attempt_at=utcnow())
        )
        session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def refresh_gauge(db: Database) -> None:
    """careforall_mails_waiting: the mails queued, kept and dead now."""
    with db.read() as session:
        counts = mail_counts(session)
    for status, count in counts.items():
        metrics.MAILS_WAITING.labels(status.value).set(count)


def backoff(attempts: int, base_delay: float) -> float:
    delay = min(base_delay * 2 ** (attempts - 1), MAX_DELAY_SECONDS)
    return float(delay * random.uniform(0.5, 1.0))


def record(
    db: Database,
    results: Sequence[tuple[Mail, Outcome]],
    *,
    base_delay: float,
    lease: datetime | None,
) -> int:
    """Write what each try did: sent, retried later with backoff, or dead.

    Only where this process still holds the mail: queued, and on PostgreSQL
    still under the lease taken with it (`next_attempt_at` as this process
    set it). A lease that ran out and was taken by another process is theirs
    to record. Returns how many were recorded."""
    now = utcnow()
    recorded = 0
    with db.write_session() as session:
        for row, outcome in results:
            held = [col(Mail.id) == row.id, col(Mail.status) == MailStatus.QUEUED]
            if lease is not None:
                held.append(col(Mail.next_attempt_at) == lease)
            result = session.execute(
                update(Mail)
                .where(*held)
                .values(**_values(row, outcome, now, base_delay))
            )
            recorded += int(result.rowcount)  # type: ignore[attr-defined]
        session.commit()
    return recorded


def _values(
    row: Mail, outcome: Outcome, now: datetime, base_delay: float
) -> dict[str, object]:
    attempts = row.attempts + 1
    values: dict[str, object] = {"attempts": attempts}
    if outcome.error is None:
        values.update(status=MailStatus.SENT, sent_at=now, last_error=None)
    elif outcome.refused:
        values.update(status=MailStatus.DEAD, last_error=outcome.error[:500])
    else:
        values.update(
            last_error=outcome.error[:500],
            next_attempt_at=now + timedelta(seconds=backoff(attempts, base_delay)),
        )
    return values


# --- admins ----------------------------------------------------------------------


def mails(
    session: Session,
    *,
    principal: Principal | None,
    first: int,
    after: str | None,
    status: MailStatus | None = None,
) -> Page[Mail]:
    """Every mail, newest first (optionally of one status)."""
    require_admin(principal)
    query = select(Mail)
    if status is not None:
        query = query.where(Mail.status == status)
    return newest_by_int_id(session, query, first=first, after=after)


def replay_mail(uow: UnitOfWork, *, principal: Principal | None, mail_id: str) -> int:
    """Send a dead or kept mail again; 0 when it is queued or sent already."""
    admin = require_admin(principal)
    with uow:
        row = row_by_id(uow.session, Mail, mail_id, "mail")
        if row.status not in {MailStatus.DEAD, MailStatus.KEPT}:
            return 0
        audit.record(
            uow,
            actor=admin,
            action="replay_mail",
            target_type="mail",
            target_id=str(row.id),
            detail={"status": row.status, "last_error": (row.last_error or "")[:500]},
        )
        row.status = MailStatus.QUEUED
        row.next_attempt_at = utcnow()
        uow.session.add(row)
        uow.commit()
    uow.db.mail_queued()
    return 1

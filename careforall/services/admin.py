"""Admin reads and repairs: stats, pledge search, dead letters, logs, reconcile.

Every function given a `principal` refuses anyone but an admin
(`UNAUTHENTICATED` without an account, `FORBIDDEN` for other accounts); only
`reconcile`, for the command line, takes none. The repairs write their audit
row in the commit of their effect.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, exists
from sqlalchemy import select as core_select
from sqlmodel import Session, col, func, select

from careforall.domain.clock import to_utc, utcnow
from careforall.domain.errors import BadUserInput, NotFound
from careforall.domain.rules import Principal, require_admin
from careforall.domain.states import PledgeStatus
from careforall.models import (
    AuditLog,
    Mail,
    OutboxEvent,
    Pledge,
    PledgeTransition,
    WebhookLog,
)
from careforall.services import audit, outbox, totals
from careforall.services.mails import MailStatus, mail_counts
from careforall.services.pagination import (
    Page,
    check_first,
    int_cursor,
    make_page,
    newest_by_int_id,
    newest_first,
    parse_row_id,
)
from careforall.services.unit_of_work import UnitOfWork
from careforall.services.webhook_log import LOGGED_REJECTED, WebhookOutcome

# An audit row names at most this many ids; `count` always says how many.
AUDIT_ID_LIMIT = 100


# --- stats -------------------------------------------------------------------


@dataclass(frozen=True)
class CurrencyAmount:
    currency: str
    amount_cents: int


@dataclass(frozen=True)
class StatusStats:
    status: PledgeStatus
    count: int
    amounts: list[CurrencyAmount]  # the pledges' amounts summed per currency


@dataclass(frozen=True)
class Stats:
    at: datetime
    pledges_by_status: list[StatusStats]
    raised_today: list[CurrencyAmount]
    raised_total: list[CurrencyAmount]
    outbox_pending: int
    outbox_lag_seconds: float
    dead_letters: int
    webhook_rejects_last_hour: int
    dead_mails: int = 0


def _amounts(rows: Sequence[tuple[str, int]]) -> list[CurrencyAmount]:
    return [CurrencyAmount(currency=c, amount_cents=int(a)) for c, a in sorted(rows)]


def stats(
    session: Session,
    *,
    principal: Principal | None,
    now: datetime | None = None,
    sampled_rejects: int = 0,
) -> Stats:
    """The numbers an operator looks at first, read in one snapshot.

    Money is summed per currency (never across them). "Raised today" is what
    pledges captured since midnight UTC still contribute (a refund removes it).
    Webhook refusals of the last hour are the logged ones (rows) plus
    `sampled_rejects`, the unverified ones this process counted in memory
    (`webhook_log.RefusalSampler`), whose rows are only samples.
    """
    require_admin(principal)
    now = now or utcnow()
    counts, sums, raised = _pledges_by_status(session)
    waiting = outbox.counts(session)
    rejects = session.exec(
        select(func.count())
        .select_from(WebhookLog)
        .where(col(WebhookLog.received_at) >= now - timedelta(hours=1))
        .where(col(WebhookLog.outcome).in_(LOGGED_REJECTED))
    ).one()
    return Stats(
        at=now,
        pledges_by_status=[
            StatusStats(s, count=counts[s.value], amounts=_amounts(sums[s.value]))
            for s in PledgeStatus
        ],
        raised_today=_amounts(_captured_since(session, _midnight(now))),
        raised_total=_amounts(raised),
        outbox_pending=waiting.pending,
        outbox_lag_seconds=waiting.lag_seconds(now),
        dead_letters=waiting.dead,
        webhook_rejects_last_hour=int(rejects) + sampled_rejects,
        dead_mails=mail_counts(session)[MailStatus.DEAD],
    )


def _midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


# What a pledge still counts for: its amount less partial refunds and lost
# disputes (as the campaigns' totals count it).
_COUNTED = (
    col(Pledge.amount_cents)
    - col(Pledge.refunded_cents)
    - col(Pledge.dispute_lost_cents)
)


def _pledges_by_status(
    session: Session,
) -> tuple[dict[str, int], dict[str, list[tuple[str, int]]], list[tuple[str, int]]]:
    """Per status: how many pledges and their sum per currency; and per
    currency, what the CAPTURED ones still count for."""
    counts: dict[str, int] = defaultdict(int)
    sums: dict[str, list[tuple[str, int]]] = defaultdict(list)
    raised: list[tuple[str, int]] = []
    for status, currency, count, amount, counted in session.execute(
        core_select(
            col(Pledge.status),
            col(Pledge.currency),
            func.count(),
            func.sum(Pledge.amount_cents),
            func.sum(_COUNTED),
        ).group_by(col(Pledge.status), col(Pledge.currency))
    ).all():
        counts[status] += int(count)
        sums[status].append((currency, int(amount)))
        if status == PledgeStatus.CAPTURED.value:
            raised.append((currency, int(counted)))
    return counts, sums, raised


def _captured_since(session: Session, since: datetime) -> list[tuple[str, int]]:
    """Per currency, what pledges captured since `since` still contribute."""
    captured_then = exists().where(
        col(PledgeTransition.pledge_id) == col(Pledge.id),
        col(PledgeTransition.to_status) == PledgeStatus.CAPTURED.value,
        col(PledgeTransition.at) >= since,
    )
    rows = session.exec(
        select(Pledge.currency, func.sum(_COUNTED))
        .where(Pledge.status == PledgeStatus.CAPTURED.value)
        .where(captured_then)
        .group_by(Pledge.currency)
    ).all()
    return [(currency, int(amount)) for currency, amount in rows]


# --- pledges -------------------------------------------------------------------


@dataclass(frozen=True)
class PledgeFilter:
    """Which pledges: `created_from` <= createdAt < `created_to`, all optional."""

    campaign_id: str | None = None
    status: PledgeStatus | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def checked(self) -> PledgeFilter:
        start = to_utc(self.created_from) if self.created_from else None
        end = to_utc(self.created_to) if self.created_to else None
        if start is not None and end is not None and start > end:
            raise BadUserInput("createdFrom must not be after createdTo.")
        return dataclasses.replace(self, created_from=start, created_to=end)


def pledge_conditions(flt: PledgeFilter) -> list[ColumnElement[bool]]:
    """WHERE conditions for pledges matching a (checked) filter."""
    conditions: list[ColumnElement[bool]] = []
    if flt.campaign_id is not None:
        conditions.append(col(Pledge.campaign_id) == flt.campaign_id)
    if flt.status is not None:
        conditions.append(col(Pledge.status) == flt.status.value)
    if flt.created_from is not None:
        conditions.append(col(Pledge.created_at) >= flt.created_from)
    if flt.created_to is not None:
        conditions.append(col(Pledge.created_at) < flt.created_to)
    return conditions


def search_pledges(
    session: Session,
    *,
    principal: Principal | None,
    filter: PledgeFilter,
    first: int,
    after: str | None,
) -> Page[Pledge]:
    """Pledges of any donor by campaign, status and creation time, newest first."""
    require_admin(principal)
    query = select(Pledge).where(*pledge_conditions(filter.checked()))
    return newest_first(session, query, first=first, after=after)


# --- dead letters ------------------------------------------------------------


def dead_letters(
    session: Session, *, principal: Principal | None, first: int, after: str | None
) -> Page[OutboxEvent]:
    """Outbox events parked after their last try, newest first."""
    require_admin(principal)
    first = check_first(first)
    rows = outbox.dead_letters(session, first=first + 1, before_id=int_cursor(after))
    return make_page(rows, first, [str(r.id) for r in rows])


Row = TypeVar("Row", OutboxEvent, Mail)


def row_by_id(session: Session, model: type[Row], raw_id: str, what: str) -> Row:
    """The row an admin names by its integer id (as the API shows it), or
    NotFound naming `what`."""
    row_id = parse_row_id(raw_id)
    row = None if row_id is None else session.get(model, row_id)
    if row is None:
        raise NotFound(f"There is no {what} with that id.")
    return row


def replay_dead_letter(
    uow: UnitOfWork, *, principal: Principal | None, event_id: str
) -> int:
    """Deliver one dead letter again; 0 when it is no longer dead (already replayed).

    Handlers are idempotent, so a replayed event has its effect once.
    """
    admin = require_admin(principal)
    with uow:
        row = row_by_id(uow.session, OutboxEvent, event_id, "outbox event")
        row_id = row.id
        assert row_id is not None  # a stored row: None would requeue them all
        replayed = outbox.requeue_dead(uow.session, now=utcnow(), row_id=row_id)
        if not replayed:
            return 0
        audit.record(
            uow,
            actor=admin,
            action="replay_dead_letter",
            target_type="outbox_event",
            target_id=str(row_id),
            detail={
                "name": row.name,
                "attempts": row.attempts,
                "last_error": (row.last_error or "")[:500],
            },
        )
        uow.commit()
    uow.db.notify_commit()  # wake the dispatcher now, not at its next timer
    return replayed


def replay_all_dead_letters(uow: UnitOfWork, *, principal: Principal | None) -> int:
    """Deliver every dead letter again; returns how many."""
    admin = require_admin(principal)
    with uow:
        ids = outbox.dead_ids(uow.session)
        if not ids:
            return 0
        replayed = outbox.requeue_dead(uow.session, now=utcnow())
        audit.record(
            uow,
            actor=admin,
            action="replay_dead_letter",
            target_type="outbox_event",
            target_id="*",
            detail={"count": replayed, "ids": ids[:AUDIT_ID_LIMIT]},
        )
        uow.commit()
    uow.db.notify_commit()
    return replayed


# --- logs --------------------------------------------------------------------


def webhook_log(
    session: Session,
    *,
    principal: Principal | None,
    first: int,
    after: str | None,
    outcome: WebhookOutcome | None,
) -> Page[WebhookLog]:
    """Requests to the payment webhook, newest first; optionally one outcome."""
    require_admin(principal)
    query = select(WebhookLog)
    if outcome is not None:
        query = query.where(WebhookLog.outcome == outcome.value)
    return newest_by_int_id(session, query, first=first, after=after)


def audit_log(
    session: Session, *, principal: Principal | None, first: int, after: str | None
) -> Page[AuditLog]:
    """Admin actions, newest first."""
    require_admin(principal)
    return newest_by_int_id(session, select(AuditLog), first=first, after=after)


# --- reconcile -----------------------------------------------------------------


@dataclass(frozen=True)
class Reconciled:
    drifts: list[totals.Drift]
    repaired: list[totals.TotalsFigures]  # the repaired totals as they are now


def reconcile(uow: UnitOfWork, *, actor: Principal | None, via: str) -> Reconciled:
    """Recompute totals from pledges and audit it. For trusted callers (the
    command line); the API goes through `reconcile_totals`."""

    def write_audit(drifts: list[totals.Drift]) -> None:
        audit.record(
            uow,
            actor=actor,
            action="reconcile",
            target_type="campaign_totals",
            target_id="*",
            detail={
                "via": via,
                "repaired": len(drifts),
                "drifts": [dataclasses.asdict(d) for d in drifts[:AUDIT_ID_LIMIT]],
            },
        )

    drifts = totals.reconcile(uow, before_commit=write_audit)
    with uow.db.read() as session:
        found = totals.read_totals(session, [d.campaign_id for d in drifts])
        repaired = list(found.values())
    return Reconciled(drifts=drifts, repaired=repaired)


def reconcile_totals(uow: UnitOfWork, *, principal: Principal | None) -> Reconciled:
    """An admin recomputes every campaign's totals; returns what drifted."""
    admin = require_admin(principal)
    return reconcile(uow, actor=admin, via="api")

"""Notifications: who hears of what, each person's feed, and marking read.

The `notify_*` functions run inside the outbox dispatcher's transaction (see
`outbox/handlers.py`), so a notification commits together with the delivery
of the event that caused it. Every notification that an event could cause
twice (a redelivered or replayed event) carries a `dedupe_key`, and one that
exists already is not written again.

Recipients: a pledge's donor is the pledge's owner, its user or, for a guest,
its anonymous session; when a guest registers or signs in, their session's
notifications move to the account with the pledges (`move_to_user`). An
organiser is the campaign's owner; admins are every user with the ADMIN role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, bindparam, func, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from careforall.db import InsertUnlessPresent
from careforall.domain import notifications as words
from careforall.domain.clock import new_id, utcnow
from careforall.domain.errors import BadUserInput, Forbidden, NotFound
from careforall.domain.events import PledgeStatusChanged
from careforall.domain.money import format_money
from careforall.domain.notifications import DONOR_KINDS, Message, NotificationKind
from careforall.domain.rules import Principal, owns, require_principal
from careforall.domain.states import PledgeStatus
from careforall.models import (
    Campaign,
    CampaignTotals,
    Notification,
    Pledge,
    table_of,
)
from careforall.services.pagination import MAX_PAGE, Page, newest_first
from careforall.services.totals import Settlement
from careforall.services.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class ReadResult:
    marked: int
    unread_count: int


# --- writing (inside the dispatcher's transaction) --------------------------


# A twin (same dedupe_key) written before, or earlier in this transaction,
# makes the INSERT do nothing: one statement instead of a look and a write.
_ADD = InsertUnlessPresent(
    table_of(Notification),
    "dedupe_key",
)


def notification(
    kind: NotificationKind,
    message: Message,
    *,
    dedupe_key: str | None,
    user_id: str | None = None,
    session_id: str | None = None,
    pledge_id: str | None = None,
    campaign_id: str | None = None,
) -> dict[str, object]:
    """One notification's row, for `add_all`."""
    message = message.clipped()
    return {
        "id": new_id("ntf"),
        "recipient_user_id": user_id,
        "recipient_session_id": None if user_id is not None else session_id,
        "kind": kind.value,
        "title": message.title,
        "body": message.body,
        "pledge_id": pledge_id,
        "campaign_id": campaign_id,
        "dedupe_key": dedupe_key,
        "created_at": utcnow(),
        "read_at": None,
    }


def add_all(conn: Connection, rows: Sequence[dict[str, object]]) -> None:
    """Add the notifications with one statement, each unless its `dedupe_key`
    was written before (None: always)."""
    _ADD.run_many(conn, rows)


_PLEDGES = table_of(Pledge)
_CAMPAIGNS = table_of(Campaign)
_TOTALS = table_of(CampaignTotals)
_ABOUT = (
    core_select(
        _PLEDGES.c.id,
        _PLEDGES.c.amount_cents,
        _PLEDGES.c.currency,
        _PLEDGES.c.failure_reason,
        _PLEDGES.c.donor_user_id,
        _PLEDGES.c.donor_session_id,
        _PLEDGES.c.donor_name,
        _CAMPAIGNS.c.id.label("campaign_id"),
        _CAMPAIGNS.c.title,
        _CAMPAIGNS.c.owner_id,
        _CAMPAIGNS.c.goal_cents,
        _CAMPAIGNS.c.currency.label("campaign_currency"),
        # Read here, after the totals handler's UPDATE in this transaction.
        _TOTALS.c.raised_cents,
    )
    .select_from(
        _PLEDGES.join(_CAMPAIGNS, _CAMPAIGNS.c.id == _PLEDGES.c.campaign_id).outerjoin(
            _TOTALS, _TOTALS.c.campaign_id == _CAMPAIGNS.c.id
        )
    )
    .where(_PLEDGES.c.id.in_(bindparam("ids", expanding=True)))
)


def notify_pledge_statuses(
    conn: Connection, events: Sequence[PledgeStatusChanged], settlement: Settlement
) -> int:
    """For a batch of status changes: tell the donor of a capture, decline or
    refund; tell the organiser of a donation and, once ever, of the goal
    reached. Returns how many notifications the batch asked for.

    Runs after `settle_pledges` (its `settlement`) in the same transaction, so
    each change's goal check sees the totals as they were right after it.
    """
    told = [
        (position, event, kind)
        for position, event in enumerate(events)
        if (kind := DONOR_KINDS.get(PledgeStatus(event.to_status))) is not None
    ]
    if not told:
        return 0
    ids = list(dict.fromkeys(event.pledge_id for _position, event, _kind in told))
    about = {row.id: row for row in conn.execute(_ABOUT, {"ids": ids})}
    # By dedupe key: a change delivered twice in one batch asks once.
    rows: dict[object, dict[str, object]] = {}
    for position, event, kind in told:
        found = about.get(event.pledge_id)
        if found is None:
            continue
        for row in _status_rows(found, kind, settlement, position):
            rows.setdefault(row["dedupe_key"], row)
    add_all(conn, list(rows.values()))
    return len(rows)


def _status_rows(
    found: Row[*tuple[Any, ...]],
    kind: NotificationKind,
    settlement: Settlement,
    position: int,
) -> list[dict[str, object]]:
    """The notifications one status change (at `position`) causes."""
    amount = format_money(found.amount_cents, found.currency)
    about = {"pledge_id": found.id, "campaign_id": found.campaign_id}
    rows = [
        notification(
            kind,
            words.donor_message(
                kind,
                amount=amount,
                campaign_title=found.title,
                failure_reason=found.failure_reason,
            ),
            dedupe_key=f"{kind.value}:{found.id}",
            user_id=found.donor_user_id,
            session_id=found.donor_session_id,
            **about,
        )
    ]
    if kind != NotificationKind.PAYMENT_CAPTURED:
        return rows
    if found.donor_user_id != found.owner_id:  # not a gift to one's own campaign
        rows.append(
            notification(
                NotificationKind.DONATION_RECEIVED,
                words.donation_received(
                    amount=amount,
                    campaign_title=found.title,
                    donor_name=found.donor_name,
                ),
                dedupe_key=f"{NotificationKind.DONATION_RECEIVED.value}:{found.id}",
                user_id=found.owner_id,
                **about,
            )
        )
    if found.raised_cents is None:
        return rows
    raised = settlement.raised_at(position, found.campaign_id, found.raised_cents)
    if raised >= found.goal_cents:
        rows.append(
            notification(
                NotificationKind.GOAL_REACHED,
                words.goal_reached(
                    raised=format_money(raised, found.campaign_currency),
                    goal=format_money(found.goal_cents, found.campaign_currency),
                    campaign_title=found.title,
                ),
                # Once per campaign, ever: a refund and a new gift do not repeat it.
                dedupe_key=f"{NotificationKind.GOAL_REACHED.value}:{found.campaign_id}",
                user_id=found.owner_id,
                campaign_id=found.campaign_id,
            )
        )
    return rows


def move_to_user(session: Session, *, session_id: str, user_id: str) -> int:
    """A guest's notifications follow their pledges to the account they claim."""
    result = session.execute(
        update(Notification)
        .where(
            col(Notification.recipient_session_id) == session_id,
            col(Notification.recipient_user_id).is_(None),
        )
        .values(recipient_user_id=user_id, recipient_session_id=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- reading -------------------------------------------------------------------


def _mine(principal: Principal) -> list[ColumnElement[bool]]:
    if principal.is_user:
        return [col(Notification.recipient_user_id) == principal.id]
    return [
        col(Notification.recipient_session_id) == principal.id,
        col(Notification.recipient_user_id).is_(None),
    ]


def feed(
    session: Session,
    *,
    principal: Principal | None,
    first: int,
    after: str | None,
    unread_only: bool = False,
) -> Page[Notification]:
    """The caller's notifications, newest first."""
    me = require_principal(principal)
    query = select(Notification).where(*_mine(me))
    if unread_only:
        query = query.where(col(Notification.read_at).is_(None))
    return newest_first(session, query, first=first, after=after)


def unread_count(session: Session, *, principal: Principal | None) -> int:
    me = require_principal(principal)
    return int(
        session.exec(
            select(func.count()).where(*_mine(me), col(Notification.read_at).is_(None))
        ).one()
    )


def newer_than(
    session: Session, *, principal: Principal, after_id: str | None, limit: int
) -> Sequence[Notification]:
    """The caller's notifications after `after_id` (all when None), newest first."""
    query = select(Notification).where(*_mine(principal))
    if after_id is not None:
        query = query.where(col(Notification.id) > after_id)
    return session.exec(query.order_by(col(Notification.id).desc()).limit(limit)).all()


@dataclass(frozen=True)
class Recipients:
    scopes: list[str]  # principal scopes ("user:…", "anon:…")
    newest_id: str | None
    more: bool  # the limit was reached: more may follow


def recipients_after(session: Session, *, after_id: str, limit: int) -> Recipients:
    """Who got notifications after `after_id`, oldest first up to `limit`; for
    the task that wakes live subscriptions."""
    rows = session.exec(
        select(
            Notification.id,
            Notification.recipient_user_id,
            Notification.recipient_session_id,
        )
        .where(col(Notification.id) > after_id)
        .order_by(col(Notification.id))
        .limit(limit)
    ).all()
    scopes = {
        f"user:{user_id}" if user_id is not None else f"anon:{session_id}"
        for _, user_id, session_id in rows
    }
    return Recipients(
        scopes=sorted(scopes),
        newest_id=rows[-1][0] if rows else None,
        more=len(rows) >= limit,
    )


def latest_id(session: Session) -> str | None:
    newest: str | None = session.exec(select(func.max(Notification.id))).one()
    return newest


# --- marking read ---------------------------------------------------------------


def mark_read(
    uow: UnitOfWork, *, principal: Principal | None, ids: Sequence[str]
) -> ReadResult:
    """Mark the caller's notifications read; all or nothing.

    Someone else's id is FORBIDDEN and an unknown one NOT_FOUND: then nothing
    is marked. One already read keeps the time it was first read.
    """
    me = require_principal(principal)
    wanted = list(dict.fromkeys(ids))
    if len(wanted) > MAX_PAGE:
        raise BadUserInput(f"Mark at most {MAX_PAGE} notifications at once.")
    with uow:
        session = uow.session
        rows = session.exec(
            select(
                Notification.recipient_user_id, Notification.recipient_session_id
            ).where(col(Notification.id).in_(wanted))
        ).all()
        if not all(owns(me, user, anon) for user, anon in rows):
            raise Forbidden("You can only mark your own notifications as read.")
        if len(rows) < len(wanted):
            raise NotFound("There is no notification with that id.")
        marked = _mark(session, me, col(Notification.id).in_(wanted))
        result = ReadResult(
            marked=marked, unread_count=unread_count(session, principal=me)
        )
        uow.commit()
    return result


def mark_all_read(
    uow: UnitOfWork, *, principal: Principal | None, up_to: str | None = None
) -> ReadResult:
    """Mark every notification of the caller read, or those up to `up_to` (the
    newest the client has shown), so one that arrived meanwhile stays unread."""
    me = require_principal(principal)
    with uow:
        session = uow.session
        condition = col(Notification.id) <= up_to if up_to is not None else None
        marked = _mark(session, me, condition)
        result = ReadResult(
            marked=marked, unread_count=unread_count(session, principal=me)
        )
        uow.commit()
    return result


def _mark(
    session: Session, me: Principal, condition: ColumnElement[bool] | None
) -> int:
    query = update(Notification).where(*_mine(me), col(Notification.read_at).is_(None))
    if condition is not None:
        query = query.where(condition)
    result = session.execute(query.values(read_at=utcnow()))
    return int(result.rowcount)  # type: ignore[attr-defined]

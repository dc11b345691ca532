"""Pledges: creation with idempotency keys, state changes, history, listings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from careforall.db import Database
from careforall.direct import Direct
from careforall.domain.clock import new_id, utcnow
from careforall.domain.errors import (
    BadUserInput,
    CampaignNotActive,
    IdempotencyKeyReused,
    NotFound,
    Unauthenticated,
)
from careforall.domain.events import PledgeCreated
from careforall.domain.money import (
    check_currency,
    check_pledge_amount,
    check_same_currency,
)
from careforall.domain.rules import Principal, may_see_pledge, require_principal
from careforall.domain.states import PledgeStatus
from careforall.models import Campaign, Pledge, PledgeTransition, built, table_of
from careforall.services.auth import principal_exists
from careforall.services.campaigns import accepting_pledges
from careforall.services.emails import normalize_email
from careforall.services.pagination import (
    Page,
    newest_first,
)
from careforall.services.transitions import record_creation
from careforall.services.unit_of_work import UnitOfWork

MAX_KEY_LENGTH = 255
MAX_RECENT_DONATIONS = 50


@dataclass(frozen=True)
class PledgeData:
    campaign_id: str
    amount_cents: int
    idempotency_key: str
    currency: str = "USD"
    donor_name: str | None = None
    message: str | None = None
    # Where a guest's receipt goes; never shown publicly.
    donor_email: str | None = None
    # "Email me this campaign's updates": only when asked.
    campaign_updates: bool = False


def _optional_text(value: str | None, field: str, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise BadUserInput(f"{field} must be at most {limit:,} characters.")
    return value or None


def _validated(data: PledgeData) -> PledgeData:
    key = data.idempotency_key
    if not 1 <= len(key) <= MAX_KEY_LENGTH or key.strip() != key:
        raise BadUserInput(
            f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} characters without "
            "leading or trailing spaces; send a new random key for each donation."
        )
    return PledgeData(
        campaign_id=data.campaign_id,
        amount_cents=check_pledge_amount(data.amount_cents),
        idempotency_key=key,
        currency=check_currency(data.currency),
        donor_name=_optional_text(data.donor_name, "donorName", 100),
        message=_optional_text(data.message, "message", 1000),
        donor_email=_donor_email(data.donor_email),
        campaign_updates=bool(data.campaign_updates),
    )


def _donor_email(value: str | None) -> str | None:
    """One mailbox, spelled as accounts' addresses are; blank is none."""
    if value is None or not value.strip():
        return None
    return normalize_email(value)


def _same_request(pledge: Row[*tuple[Any, ...]], data: PledgeData) -> bool:
    return bool(
        pledge.campaign_id == data.campaign_id
        and pledge.amount_cents == data.amount_cents
        and pledge.currency == data.currency
        and pledge.donor_name == data.donor_name
        and pledge.message == data.message
        and pledge.donor_email == data.donor_email
        and bool(pledge.campaign_updates) == data.campaign_updates
    )


# createPledge is the hottest write: its statements are Core, each compiled
# once, and only a replayed key loads an ORM object.
_PLEDGES = table_of(Pledge)
_INSERT_PLEDGE = Direct(insert(_PLEDGES))
_BY_KEY = Direct(
    core_select(
        _PLEDGES.c.id,
        _PLEDGES.c.campaign_id,
        _PLEDGES.c.amount_cents,
        _PLEDGES.c.currency,
        _PLEDGES.c.donor_name,
        _PLEDGES.c.message,
        _PLEDGES.c.donor_email,
        _PLEDGES.c.campaign_updates,
    ).where(
        _PLEDGES.c.idempotency_scope == bindparam("scope"),
        _PLEDGES.c.idempotency_key == bindparam("key"),
    )
)
_CAMPAIGN = table_of(Campaign)
_CAMPAIGN_FOR_PLEDGE = Direct(
    core_select(
        _CAMPAIGN.c.id, _CAMPAIGN.c.currency, _CAMPAIGN.c.status, _CAMPAIGN.c.ends_at
    )
    .where(_CAMPAIGN.c.id == bindparam("campaign_id"))
    # FOR SHARE (PostgreSQL): a campaign closing meanwhile waits for this
    # pledge, or this pledge sees it closed. SQLite ignores it.
    .with_for_update(read=True)
)


def _replay(uow: UnitOfWork, scope: str, data: PledgeData) -> Pledge | None:
    """The pledge an earlier request with this key made, if it matches."""
    row = _BY_KEY.first(uow.connection, {"scope": scope, "key": data.idempotency_key})
    if row is None:
        return None
    if not _same_request(row, data):
        raise IdempotencyKeyReused(
            "This idempotencyKey was already used for a different donation; "
            "use a new key for a new donation."
        )
    # Only a replay loads an ORM object (and, in the writer, opens a session).
    return uow.session.get(Pledge, row.id)


def create_pledge(
    uow: UnitOfWork, *, principal: Principal | None, data: PledgeData
) -> Pledge:
    """Make a PENDING pledge, or return the one this key already made."""
    donor = require_principal(principal)
    data = _validated(data)
    with uow:
        # Core statements straight on the transaction's connection.
        conn = uow.connection
        existing = _replay(uow, donor.scope, data)
        if existing is not None:
            return existing
        if not principal_exists(conn, donor):
            raise Unauthenticated("This session no longer exists; start a new one.")
        campaign = _CAMPAIGN_FOR_PLEDGE.first(conn, {"campaign_id": data.campaign_id})
        if campaign is None:
            raise NotFound("There is no campaign with that id.")
        check_same_currency(data.currency, campaign.currency)
        if not accepting_pledges(campaign):
            raise CampaignNotActive("This campaign is not taking donations now.")
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("plg"),
            "campaign_id": campaign.id,
            "amount_cents": data.amount_cents,
            "currency": data.currency,
            "status": PledgeStatus.PENDING.value,
            "idempotency_scope": donor.scope,
            "idempotency_key": data.idempotency_key,
            "donor_user_id": donor.id if donor.is_user else None,
            "donor_session_id": None if donor.is_user else donor.id,
            "donor_name": data.donor_name,
            "message": data.message,
            "donor_email": data.donor_email,
            "campaign_updates": data.campaign_updates,
            "receipt_number": None,  # given when its receipt is written
            "receipt_issued_at": None,
            "payment_method": None,
            "failure_reason": None,
            "refunded_cents": 0,
            "dispute_status": None,
            "dispute_lost_cents": 0,
            "created_at": now,
            "updated_at": now,
            "recurring_donation_id": None,
            "recurring_period": None,
            "recurring_attempt": None,
        }
        try:
            # The INSERT, where a concurrent request with this key loses.
            insert_pledge(uow, conn, row, at=now)
            # A PENDING pledge shows in no public answer (totals, recent
            # donations and trending count CAPTURED ones).
            uow.keep_answers()
            uow.commit()
        except IntegrityError:
            # Another request won the race for this key: answer with its pledge.
            uow.rollback()
            winner = _replay(uow, donor.scope, data)
            if winner is None:
                raise
            return winner
    return built(Pledge, row)


def insert_pledge(
    uow: UnitOfWork, conn: Connection, row: dict[str, Any], *, at: datetime
) -> None:
    """A new pledge's row, its first history entry and its PledgeCreated
    event, in the caller's transaction (a gift, or a recurring gift's period)."""
    _INSERT_PLEDGE.run(conn, row)
    record_creation(conn, row["id"], at=at)
    uow.emit(
        PledgeCreated(
            pledge_id=row["id"],
            campaign_id=row["campaign_id"],
            amount_cents=row["amount_cents"],
            currency=row["currency"],
        )
    )


def get_pledge(
    session: Session, *, principal: Principal | None, pledge_id: str
) -> Pledge | None:
    """A pledge for its donor or an admin; NotFound for anyone else and when
    there is no such pledge alike, so an id tells nobody whether it exists."""
    viewer = require_principal(principal)
    pledge = session.get(Pledge, pledge_id)
    if pledge is None or not may_see_pledge(viewer, pledge):
        raise NotFound("There is no pledge with that id.")
    return pledge


_STATUSES = core_select(_PLEDGES.c.id, _PLEDGES.c.status).where(
    _PLEDGES.c.id.in_(bindparam("ids", expanding=True))
)


def current_statuses(
    db: Database, pledge_ids: Sequence[str]
) -> dict[str, PledgeStatus]:
    """The pledges' statuses as committed; an unknown id is left out (one Core
    read: the outbox asks it for every batch of authorizations)."""
    if not pledge_ids:
        return {}
    with db.engine.connect() as conn:
        rows = conn.execute(_STATUSES, {"ids": list(dict.fromkeys(pledge_ids))})
        return {pledge_id: PledgeStatus(status) for pledge_id, status in rows}


def current_status(db: Database, pledge_id: str) -> PledgeStatus:
    """The pledge's status as committed, or NotFound."""
    status = current_statuses(db, [pledge_id]).get(pledge_id)
    if status is None:
        raise NotFound("There is no pledge with that id.")
    return status


def require_pledge(session: Session, pledge_id: str) -> Pledge:
    """The pledge, or NotFound."""
    pledge = session.get(Pledge, pledge_id)
    if pledge is None:
        raise NotFound("There is no pledge with that id.")
    return pledge


def history(
    session: Session, pledge_ids: Sequence[str]
) -> dict[str, list[PledgeTransition]]:
    """Each pledge's transitions, oldest first."""
    result: dict[str, list[PledgeTransition]] = {pid: [] for pid in pledge_ids}
    if not pledge_ids:
        return result
    rows = session.exec(
        select(PledgeTransition)
        .where(col(PledgeTransition.pledge_id).in_(pledge_ids))
        .order_by(col(PledgeTransition.id))
    ).all()
    for row in rows:
        result[row.pledge_id].append(row)
    return result


def my_donations(
    session: Session, *, principal: Principal | None, first: int, after: str | None
) -> Page[Pledge]:
    """The caller's pledges, newest first."""
    donor = require_principal(principal)
    query = select(Pledge)
    if donor.is_user:
        query = query.where(Pledge.donor_user_id == donor.id)
    else:
        query = query.where(
            Pledge.donor_session_id == donor.id,
            Pledge.donor_user_id == None,  # noqa: E711
        )
    return newest_first(session, query, first=first, after=after)


_PLEDGES = table_of(Pledge)
_RANKED = (
    core_select(
        _PLEDGES.c.campaign_id,
        _PLEDGES.c.donor_name,
        _PLEDGES.c.amount_cents,
        _PLEDGES.c.currency,
        _PLEDGES.c.message,
        _PLEDGES.c.created_at,
        func.row_number()
        .over(partition_by=_PLEDGES.c.campaign_id, order_by=_PLEDGES.c.id.desc())
        .label("rank"),
    )
    .where(
        _PLEDGES.c.campaign_id.in_(bindparam("ids", expanding=True)),
        _PLEDGES.c.status == PledgeStatus.CAPTURED.value,
    )
    .subquery("ranked")
)
# Each campaign's newest `first` CAPTURED pledges in one statement (a window
# function: SQLite 3.25 and PostgreSQL both have them), public columns only.
_RECENT = (
    core_select(_RANKED)
    .where(_RANKED.c.rank <= bindparam("first"))
    .order_by(_RANKED.c.campaign_id, _RANKED.c.rank)
)


def check_recent_first(first: int) -> int:
    """How many recent donations may be asked for: 1 to MAX_RECENT_DONATIONS."""
    if not 1 <= first <= MAX_RECENT_DONATIONS:
        raise BadUserInput(f"'first' must be from 1 to {MAX_RECENT_DONATIONS}.")
    return first


def recent_donations(
    conn: Connection | Session, *, campaign_ids: Sequence[str], first: int
) -> dict[str, list[Row[Any]]]:
    """Each campaign's CAPTURED pledges, newest first, for its public page:
    the public columns (donor name, amount, currency, message, time) only."""
    check_recent_first(first)
    found: dict[str, list[Row[Any]]] = {cid: [] for cid in campaign_ids}
    if not found:
        return found
    rows = conn.execute(_RECENT, {"ids": list(found), "first": first})
    for row in rows:
        found[row.campaign_id].append(row)
    return found

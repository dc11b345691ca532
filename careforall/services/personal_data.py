"""Everything held about one person, gathered for them to download (the
right of access): their profile, pledges with their history, the campaigns
they organise, notifications and the mails sent to them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, SQLModel, col, select

from careforall.domain.errors import Unauthenticated
from careforall.domain.rules import Principal, require_user
from careforall.models import (
    Campaign,
    Mail,
    Notification,
    Pledge,
    PledgeTransition,
    RecurringDonation,
)
from careforall.models import User as UserRow

# What of each row is the person's (not the server's bookkeeping: idempotency
# scopes, token versions, password hashes, send attempts).
_PROFILE = ("id", "email", "name", "role", "email_verified", "created_at")
_PLEDGE = (
    "id",
    "campaign_id",
    "amount_cents",
    "currency",
    "status",
    "donor_name",
    "donor_email",
    "campaign_updates",
    "message",
    "payment_method",
    "failure_reason",
    "created_at",
    "updated_at",
)
_TRANSITION = ("from_status", "to_status", "at", "source")
_CAMPAIGN = (
    "id",
    "title",
    "description",
    "category",
    "goal_cents",
    "currency",
    "status",
    "ends_at",
    "created_at",
)
_NOTIFICATION = (
    "id",
    "kind",
    "title",
    "body",
    "pledge_id",
    "campaign_id",
    "created_at",
    "read_at",
)
_MAIL = ("kind", "subject", "text", "status", "created_at", "sent_at")
# A recurring gift's terms; the card's token is the provider's, not the person's.
_PLAN = (
    "id",
    "campaign_id",
    "amount_cents",
    "currency",
    "interval",
    "status",
    "next_charge_at",
    "failure_reason",
    "created_at",
    "updated_at",
)


def _value(value: object) -> object:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _fields(row: SQLModel, names: Iterable[str]) -> dict[str, Any]:
    return {_camel(name): _value(getattr(row, name)) for name in names}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def personal_data(session: Session, *, principal: Principal | None) -> dict[str, Any]:
    """The caller's data as JSON-ready values, one consistent read."""
    principal = require_user(principal)
    user = session.get(UserRow, principal.id)
    if user is None or user.erased_at is not None:
        raise Unauthenticated("This account no longer exists; sign in again.")
    pledges = session.exec(
        select(Pledge)
        .where(col(Pledge.donor_user_id) == user.id)
        .order_by(col(Pledge.id))
    ).all()
    history: dict[str, list[dict[str, Any]]] = {p.id: [] for p in pledges}
    for step in session.exec(
        select(PledgeTransition)
        .where(col(PledgeTransition.pledge_id).in_(list(history)))
        .order_by(col(PledgeTransition.id))
    ):
        history[step.pledge_id].append(_fields(step, _TRANSITION))
    campaigns = session.exec(
        select(Campaign)
        .where(col(Campaign.owner_id) == user.id)
        .order_by(col(Campaign.id))
    ).all()
    notes = session.exec(
        select(Notification)
        .where(col(Notification.recipient_user_id) == user.id)
        .order_by(col(Notification.id))
    ).all()
    mails = session.exec(
        select(Mail).where(col(Mail.to_address) == user.email).order_by(col(Mail.id))
    ).all()
    plans = session.exec(
        select(RecurringDonation)
        .where(col(RecurringDonation.donor_user_id) == user.id)
        .order_by(col(RecurringDonation.id))
    ).all()
    return {
        "profile": _fields(user, _PROFILE),
        "pledges": [_fields(p, _PLEDGE) | {"history": history[p.id]} for p in pledges],
        "campaignsOrganised": [_fields(c, _CAMPAIGN) for c in campaigns],
        "notifications": [_fields(n, _NOTIFICATION) for n in notes],
        "mails": [_fields(m, _MAIL) | {"to": m.to_address} for m in mails],
        "recurringDonations": [_fields(p, _PLAN) for p in plans],
    }

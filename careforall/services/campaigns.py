"""Campaigns: create, read, list, pause and close."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlmodel import Session, col, select

from careforall.domain.clock import new_id, to_utc, utcnow
from careforall.domain.errors import (
    BadUserInput,
    Forbidden,
    InvalidTransition,
    NotFound,
)
from careforall.domain.events import CampaignCreated, CampaignStatusChanged
from careforall.domain.money import check_currency, check_goal
from careforall.domain.rules import Principal, may_manage_campaign, require_user
from careforall.domain.states import CampaignStatus, campaign_status_allowed
from careforall.models import Campaign, CampaignTotals
from careforall.services import audit
from careforall.services.pagination import (
    Page,
    newest_first,
)
from careforall.services.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class CampaignData:
    title: str
    description: str
    category: str
    goal_cents: int
    currency: str = "USD"
    ends_at: datetime | None = None


def _text(value: str, field: str, low: int, high: int) -> str:
    value = value.strip()
    if not low <= len(value) <= high:
        raise BadUserInput(f"{field} must be {low} to {high:,} characters long.")
    return value


def create_campaign(
    uow: UnitOfWork, *, principal: Principal | None, data: CampaignData
) -> Campaign:
    """A signed-in user starts a campaign; it is ACTIVE with zero totals."""
    owner = require_user(principal)
    ends_at = to_utc(data.ends_at) if data.ends_at is not None else None
    if ends_at is not None and ends_at <= utcnow():
        raise BadUserInput("endsAt must be in the future.")
    campaign = Campaign(
        id=new_id("cmp"),
        title=_text(data.title, "title", 1, 200),
        description=_text(data.description, "description", 1, 20_000),
        category=_text(data.category, "category", 1, 50),
        goal_cents=check_goal(data.goal_cents),
        currency=check_currency(data.currency),
        ends_at=ends_at,
        owner_id=owner.id,
    )
    with uow:
        uow.session.add(campaign)
        uow.session.flush()
        uow.session.add(CampaignTotals(campaign_id=campaign.id))
        uow.emit(CampaignCreated(campaign_id=campaign.id, owner_id=owner.id))
        uow.commit()
    return campaign


def set_campaign_status(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    campaign_id: str,
    status: CampaignStatus,
) -> Campaign:
    """Pause, resume or close: by the campaign's owner or an admin (audited)."""
    actor = require_user(principal)
    with uow:
        campaign = uow.session.get(Campaign, campaign_id, with_for_update=True)
        if campaign is None:
            raise NotFound("There is no campaign with that id.")
        if not may_manage_campaign(actor, campaign):
            raise Forbidden("Only the campaign's organiser or an admin may do this.")
        current = CampaignStatus(campaign.status)
        if current == status:
            return campaign
        if not campaign_status_allowed(current, status):
            raise InvalidTransition(f"A {current} campaign cannot become {status}.")
        campaign.status = status.value
        campaign.updated_at = utcnow()
        uow.session.add(campaign)
        uow.emit(
            CampaignStatusChanged(
                campaign_id=campaign.id,
                from_status=current.value,
                to_status=status.value,
                source="admin"
                if actor.is_admin and actor.id != campaign.owner_id
                else "owner",
            )
        )
        if actor.is_admin:
            audit.record(
                uow,
                actor=actor,
                action="set_campaign_status",
                target_type="campaign",
                target_id=campaign.id,
                detail={"from": current.value, "to": status.value},
            )
        uow.commit()
    return campaign


def get_campaign(session: Session, campaign_id: str) -> Campaign | None:
    return session.get(Campaign, campaign_id)


def campaigns_by_id(session: Session, ids: Sequence[str]) -> dict[str, Campaign]:
    """The campaigns with these ids (one query for a whole response)."""
    rows = session.exec(select(Campaign).where(col(Campaign.id).in_(list(ids))))
    return {row.id: row for row in rows}


def list_campaigns(
    session: Session,
    *,
    first: int,
    after: str | None,
    status: CampaignStatus | None,
) -> Page[Campaign]:
    """Newest first, keyset-paged."""
    query = select(Campaign)
    if status is not None:
        query = query.where(Campaign.status == status.value)
    return newest_first(session, query, first=first, after=after)


def my_campaigns(
    session: Session, *, principal: Principal | None, first: int, after: str | None
) -> Page[Campaign]:
    """The signed-in caller's own campaigns, every status, newest first."""
    owner = require_user(principal)
    query = select(Campaign).where(Campaign.owner_id == owner.id)
    return newest_first(session, query, first=first, after=after)


class Schedule(Protocol):
    """What decides whether a campaign takes pledges: a row or a model."""

    @property
    def status(self) -> str: ...

    @property
    def ends_at(self) -> datetime | None: ...


def accepting_pledges(campaign: Schedule) -> bool:
    return campaign.status == CampaignStatus.ACTIVE and (
        campaign.ends_at is None or campaign.ends_at > utcnow()
    )

"""Campaigns: create, read, list, pause and close; the moves of their status."""

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
from careforall.domain.rules import (
    Principal,
    may_manage_campaign,
    may_see_campaign,
    require_user,
)
from careforall.domain.search import CampaignSort
from careforall.domain.states import (
    Actor,
    CampaignAction,
    CampaignStatus,
    campaign_move,
)
from careforall.models import Campaign, CampaignTotals
from careforall.services import audit
from careforall.services.discovery import list_public_campaigns
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


def check_title(value: str) -> str:
    return _text(value, "title", 1, 200)


def check_description(value: str) -> str:
    return _text(value, "description", 1, 20_000)


def check_category(value: str) -> str:
    return _text(value, "category", 1, 50)


def check_ends_at(value: datetime | None) -> datetime | None:
    """A deadline, when given, is in the future (stored in UTC)."""
    ends_at = to_utc(value) if value is not None else None
    if ends_at is not None and ends_at <= utcnow():
        raise BadUserInput("endsAt must be in the future.")
    return ends_at


def create_campaign(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    data: CampaignData,
    review: bool = False,
) -> Campaign:
    """A signed-in user starts a campaign with zero totals: ACTIVE, or
    IN_REVIEW until an admin approves it when `review` is on."""
    owner = require_user(principal)
    status = CampaignStatus.IN_REVIEW if review else CampaignStatus.ACTIVE
    campaign = Campaign(
        id=new_id("cmp"),
        title=check_title(data.title),
        description=check_description(data.description),
        category=check_category(data.category),
        goal_cents=check_goal(data.goal_cents),
        currency=check_currency(data.currency),
        ends_at=check_ends_at(data.ends_at),
        owner_id=owner.id,
        status=status.value,
    )
    with uow:
        uow.session.add(campaign)
        uow.session.flush()
        uow.session.add(CampaignTotals(campaign_id=campaign.id))
        uow.emit(CampaignCreated(campaign_id=campaign.id, owner_id=owner.id))
        uow.commit()
    return campaign


def locked_campaign(
    uow: UnitOfWork, actor: Principal, campaign_id: str, *, manage: bool
) -> Campaign:
    """The campaign, locked for this transaction. One the caller may not see
    answers as a missing one; with `manage`, only its organiser or an admin
    may go on."""
    found = uow.session.get(Campaign, campaign_id, with_for_update=True)
    return reachable_campaign(actor, found, manage=manage)


def reachable_campaign(
    actor: Principal, campaign: Campaign | None, *, manage: bool
) -> Campaign:
    """The campaign, if the actor may see it (else as a missing one) and,
    with `manage`, change it (its organiser or an admin)."""
    if campaign is None or not may_see_campaign(actor, campaign):
        raise NotFound("There is no campaign with that id.")
    if manage and not may_manage_campaign(actor, campaign):
        raise Forbidden("Only the campaign's organiser or an admin may do this.")
    return campaign


def move_campaign(
    uow: UnitOfWork,
    *,
    actor: Principal,
    campaign: Campaign,
    action: CampaignAction,
    target: CampaignStatus,
) -> CampaignStatus:
    """Move a locked campaign as the domain allows (emits and audits); returns
    the status it had."""
    current = CampaignStatus(campaign.status)
    allowed = campaign_move(action, current, target)
    if allowed is None:
        raise InvalidTransition(f"A {current} campaign cannot become {target}.")
    if allowed is Actor.ADMIN and not actor.is_admin:
        raise Forbidden(f"Only an admin may make a {current} campaign {target}.")
    campaign.status = target.value
    campaign.updated_at = utcnow()
    uow.session.add(campaign)
    by_admin = actor.is_admin and actor.id != campaign.owner_id
    uow.emit(
        CampaignStatusChanged(
            campaign_id=campaign.id,
            from_status=current.value,
            to_status=target.value,
            source="admin" if by_admin else "owner",
        )
    )
    if actor.is_admin:
        audit.record(
            uow,
            actor=actor,
            action=f"{action.value}_campaign"
            if action is not CampaignAction.MANAGE
            else "set_campaign_status",
            target_type="campaign",
            target_id=campaign.id,
            detail={"from": current.value, "to": target.value},
        )
    return current


def set_campaign_status(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    campaign_id: str,
    status: CampaignStatus,
) -> Campaign:
    """Pause, resume or close: by the campaign's owner or an admin (audited);
    a suspension is lifted by an admin only."""
    actor = require_user(principal)
    with uow:
        campaign = locked_campaign(uow, actor, campaign_id, manage=True)
        if campaign.status == status:
            return campaign
        move_campaign(
            uow,
            actor=actor,
            campaign=campaign,
            action=CampaignAction.MANAGE,
            target=status,
        )
        uow.commit()
    return campaign


def get_campaign(session: Session, campaign_id: str) -> Campaign | None:
    """The campaign, whatever its status: the caller decides who may see it
    (`domain.rules.may_see_campaign`)."""
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
    search: str | None = None,
    category: str | None = None,
    sort: CampaignSort = CampaignSort.NEWEST,
) -> Page[Campaign]:
    """The public list (services/discovery.py): newest first unless sorted or
    searched; campaigns not reviewed (or rejected) are never listed, so the
    list is the same for everyone."""
    return list_public_campaigns(
        session,
        first=first,
        after=after,
        status=status,
        search=search,
        category=category,
        sort=sort,
    )


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

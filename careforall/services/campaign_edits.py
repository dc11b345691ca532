"""Editing a campaign: only the fields given change, checked as on creation,
and each change is kept (who, when, which field, old and new) for admins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from careforall.domain.clock import utcnow
from careforall.domain.errors import BadUserInput, InvalidTransition
from careforall.domain.events import CampaignEdited
from careforall.domain.money import check_goal, format_money
from careforall.domain.rules import Principal, require_admin, require_user
from careforall.domain.states import CampaignStatus
from careforall.models import Campaign, CampaignEdit, CampaignTotals
from careforall.services import audit
from careforall.services.campaigns import (
    check_category,
    check_description,
    check_ends_at,
    check_title,
    locked_campaign,
)
from careforall.services.pagination import Page, newest_by_int_id
from careforall.services.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class CampaignChanges:
    """What an edit asks for; None leaves a field as it is. `clear_ends_at`
    removes the deadline."""

    title: str | None = None
    description: str | None = None
    category: str | None = None
    goal_cents: int | None = None
    ends_at: datetime | None = None
    clear_ends_at: bool = False


def _checked(changes: CampaignChanges) -> dict[str, object]:
    """The fields to set, each checked as createCampaign checks it."""
    wanted: dict[str, object] = {}
    if changes.title is not None:
        wanted["title"] = check_title(changes.title)
    if changes.description is not None:
        wanted["description"] = check_description(changes.description)
    if changes.category is not None:
        wanted["category"] = check_category(changes.category)
    if changes.goal_cents is not None:
        wanted["goal_cents"] = check_goal(changes.goal_cents)
    if changes.clear_ends_at:
        wanted["ends_at"] = None
    elif changes.ends_at is not None:
        wanted["ends_at"] = check_ends_at(changes.ends_at)
    return wanted


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def update_campaign(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    campaign_id: str,
    changes: CampaignChanges,
) -> Campaign:
    """The organiser or an admin changes the fields given; the goal never
    drops below what was raised. Nothing is stored unless every field passes."""
    actor = require_user(principal)
    wanted = _checked(changes)
    with uow:
        campaign = locked_campaign(uow, actor, campaign_id, manage=True)
        if campaign.status == CampaignStatus.CLOSED:
            raise InvalidTransition("A CLOSED campaign cannot be edited.")
        goal = wanted.get("goal_cents")
        if isinstance(goal, int):
            totals = uow.session.get(CampaignTotals, campaign.id, with_for_update=True)
            raised = totals.raised_cents if totals is not None else 0
            if goal < raised:
                raise BadUserInput(
                    "goalCents cannot be less than what was raised already ("
                    f"{format_money(raised, campaign.currency)})."
                )
        now = utcnow()
        changed = [name for name, v in wanted.items() if getattr(campaign, name) != v]
        for name in changed:
            uow.session.add(
                CampaignEdit(
                    campaign_id=campaign.id,
                    actor_user_id=actor.id,
                    at=now,
                    field=name,
                    old_value=_text(getattr(campaign, name)),
                    new_value=_text(wanted[name]),
                )
            )
            setattr(campaign, name, wanted[name])
        if not changed:
            return campaign
        campaign.updated_at = now
        uow.session.add(campaign)
        uow.emit(
            CampaignEdited(
                campaign_id=campaign.id, actor_id=actor.id, fields=",".join(changed)
            )
        )
        if actor.is_admin and actor.id != campaign.owner_id:
            audit.record(
                uow,
                actor=actor,
                action="update_campaign",
                target_type="campaign",
                target_id=campaign.id,
                detail={"fields": changed},
            )
        uow.commit()
    return campaign


def edit_history(
    session: Session,
    *,
    principal: Principal | None,
    campaign_id: str,
    first: int,
    after: str | None,
) -> Page[CampaignEdit]:
    """Admins: a campaign's edits, newest first."""
    require_admin(principal)
    query = select(CampaignEdit).where(CampaignEdit.campaign_id == campaign_id)
    return newest_by_int_id(session, query, first=first, after=after)

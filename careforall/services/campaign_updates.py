"""Updates: news an organiser posts on their campaign's page (the treatment
went ahead, a new estimate), newest first; donors who opted in are told."""

from __future__ import annotations

from sqlmodel import Session, select

from careforall.domain.clock import new_id
from careforall.domain.errors import BadUserInput, Forbidden
from careforall.domain.events import CampaignUpdatePosted
from careforall.domain.rules import Principal, require_user
from careforall.models import CampaignUpdate
from careforall.services.campaigns import locked_campaign
from careforall.services.pagination import Page, newest_first
from careforall.services.unit_of_work import UnitOfWork

TITLE_LIMIT = 200
BODY_LIMIT = 10_000


def _text(value: str, field: str, limit: int) -> str:
    value = value.strip()
    if not 1 <= len(value) <= limit:
        raise BadUserInput(f"{field} must be 1 to {limit:,} characters long.")
    return value


def post_update(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    campaign_id: str,
    title: str,
    body: str,
) -> CampaignUpdate:
    """The campaign's organiser posts an update (in any status: a closed
    campaign's donors still want to hear how it went)."""
    author = require_user(principal)
    update = CampaignUpdate(
        id=new_id("upd"),
        campaign_id=campaign_id,
        author_user_id=author.id,
        title=_text(title, "title", TITLE_LIMIT),
        body=_text(body, "body", BODY_LIMIT),
    )
    with uow:
        campaign = locked_campaign(uow, author, campaign_id, manage=False)
        if campaign.owner_id != author.id:
            raise Forbidden("Only the campaign's organiser posts its updates.")
        uow.session.add(update)
        uow.emit(CampaignUpdatePosted(campaign_id=campaign.id, update_id=update.id))
        uow.commit()
    return update


def updates_page(
    session: Session, *, campaign_id: str, first: int, after: str | None
) -> Page[CampaignUpdate]:
    """A campaign's updates, newest first (the caller has seen the campaign)."""
    query = select(CampaignUpdate).where(CampaignUpdate.campaign_id == campaign_id)
    return newest_first(session, query, first=first, after=after)

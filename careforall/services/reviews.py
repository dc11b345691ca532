"""Review: admins approve or reject new campaigns, suspend live ones, and work
through the queue of campaigns waiting, each with its organiser's history."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from careforall.domain.errors import BadUserInput
from careforall.domain.events import CampaignReviewed
from careforall.domain.rules import Principal, require_admin
from careforall.domain.states import CampaignAction, CampaignStatus
from careforall.models import Campaign, CampaignReport
from careforall.services.campaigns import locked_campaign, move_campaign
from careforall.services.pagination import Page, oldest_first
from careforall.services.unit_of_work import UnitOfWork

NOTE_LIMIT = 1000
# An organiser's campaigns shown beside one waiting: the newest of them.
ORGANISER_HISTORY = 20


def _note(note: str | None, *, required: bool) -> str | None:
    text = (note or "").strip()
    if required and not text:
        raise BadUserInput("note must say why (1 to 1,000 characters).")
    if len(text) > NOTE_LIMIT:
        raise BadUserInput("note must be at most 1,000 characters long.")
    return text or None


def _decide(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    campaign_id: str,
    action: CampaignAction,
    target: CampaignStatus,
    note: str | None,
) -> Campaign:
    admin = require_admin(principal)
    with uow:
        campaign = locked_campaign(uow, admin, campaign_id, manage=True)
        move_campaign(uow, actor=admin, campaign=campaign, action=action, target=target)
        campaign.review_note = note
        uow.emit(
            CampaignReviewed(
                campaign_id=campaign.id,
                owner_id=campaign.owner_id,
                outcome=target.value,
                note=note,
                decided_at=campaign.updated_at.isoformat(),
            )
        )
        uow.commit()
    return campaign


def review_campaign(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    campaign_id: str,
    approve: bool,
    note: str | None,
) -> Campaign:
    """An admin's decision on a campaign IN_REVIEW: ACTIVE, or REJECTED with
    the note saying why (required); the organiser is told either way."""
    return _decide(
        uow,
        principal=principal,
        campaign_id=campaign_id,
        action=CampaignAction.REVIEW,
        target=CampaignStatus.ACTIVE if approve else CampaignStatus.REJECTED,
        note=_note(note, required=not approve),
    )


def suspend_campaign(
    uow: UnitOfWork, *, principal: Principal | None, campaign_id: str, note: str
) -> Campaign:
    """An admin stops an ACTIVE or PAUSED campaign taking pledges; the note is
    shown on its page. Only an admin lifts it (setCampaignStatus ACTIVE)."""
    return _decide(
        uow,
        principal=principal,
        campaign_id=campaign_id,
        action=CampaignAction.SUSPEND,
        target=CampaignStatus.SUSPENDED,
        note=_note(note, required=True),
    )


# --- the queue -------------------------------------------------------------------


@dataclass(frozen=True)
class QueueEntry:
    """A campaign waiting for review, with what an admin weighs: the
    organiser's other campaigns and the reports against each."""

    campaign: Campaign
    report_count: int
    organiser_campaigns: Sequence[Campaign]  # the newest ORGANISER_HISTORY
    organiser_report_count: int


def review_queue(
    session: Session, *, principal: Principal | None, first: int, after: str | None
) -> Page[QueueEntry]:
    """Admins: the campaigns IN_REVIEW, oldest first."""
    require_admin(principal)
    query = select(Campaign).where(Campaign.status == CampaignStatus.IN_REVIEW.value)
    page = oldest_first(session, query, first=first, after=after)
    owners = {c.owner_id for c in page.items}
    history: dict[str, list[Campaign]] = defaultdict(list)
    if owners:
        rows = session.exec(
            select(Campaign)
            .where(col(Campaign.owner_id).in_(owners))
            .order_by(col(Campaign.id).desc())
        )
        for row in rows:
            if len(history[row.owner_id]) < ORGANISER_HISTORY:
                history[row.owner_id].append(row)
    reports = report_counts(session, [c.id for c in page.items])
    by_owner = owner_report_counts(session, list(owners))
    entries = [
        QueueEntry(
            campaign=c,
            report_count=reports[c.id],
            organiser_campaigns=history[c.owner_id],
            organiser_report_count=by_owner[c.owner_id],
        )
        for c in page.items
    ]
    return Page(entries, page.cursors, page.has_next_page)


def owner_report_counts(session: Session, owner_ids: Sequence[str]) -> Counter[str]:
    """How many reports each organiser's campaigns have had, all together."""
    counts: Counter[str] = Counter()
    if not owner_ids:
        return counts
    rows = session.exec(
        select(Campaign.owner_id, func.count())
        .join(CampaignReport, col(CampaignReport.campaign_id) == col(Campaign.id))
        .where(col(Campaign.owner_id).in_(list(owner_ids)))
        .group_by(col(Campaign.owner_id))
    )
    for owner_id, count in rows:
        counts[owner_id] = int(count)
    return counts


def report_counts(session: Session, campaign_ids: Sequence[str]) -> Counter[str]:
    """How many reports each campaign has had."""
    counts: Counter[str] = Counter()
    if not campaign_ids:
        return counts
    rows = session.exec(
        select(CampaignReport.campaign_id, func.count())
        .where(col(CampaignReport.campaign_id).in_(list(campaign_ids)))
        .group_by(col(CampaignReport.campaign_id))
    )
    for campaign_id, count in rows:
        counts[campaign_id] = int(count)
    return counts

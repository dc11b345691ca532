"""What recurring gifts add up to: an organiser's monthly donors and the
monthly amount they pledged, and the plans whose charges are failing (admins)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, or_, select

from careforall.domain.errors import Forbidden, NotFound
from careforall.domain.recurring import RecurringInterval, RecurringStatus
from careforall.domain.rules import (
    Principal,
    may_manage_campaign,
    may_see_campaign,
    require_admin,
    require_user,
)
from careforall.models import Campaign, RecurringDonation
from careforall.services.pagination import Page, newest_first

# A weekly gift's share of a month: 52 weeks over 12 months.
WEEKS_PER_MONTH = 52 / 12


@dataclass(frozen=True)
class MonthlyGiving:
    campaign_id: str
    donors: int  # donors with at least one ACTIVE plan
    active_plans: int
    monthly_amount_cents: int  # weekly plans counted at 52/12 a month
    currency: str


def monthly_giving(
    session: Session, *, principal: Principal | None, campaign_id: str
) -> MonthlyGiving:
    """A campaign's ACTIVE recurring gifts, for its organiser or an admin."""
    caller = require_user(principal)
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or not may_see_campaign(caller, campaign):
        raise NotFound("There is no campaign with that id.")
    if not may_manage_campaign(caller, campaign):
        raise Forbidden("Only the campaign's organiser or an admin may see this.")
    rows = session.exec(
        select(
            RecurringDonation.interval,
            func.count(),
            func.coalesce(func.sum(RecurringDonation.amount_cents), 0),
        )
        .where(
            RecurringDonation.campaign_id == campaign_id,
            RecurringDonation.status == RecurringStatus.ACTIVE.value,
        )
        .group_by(RecurringDonation.interval)
    ).all()
    donors = session.exec(
        select(func.count(func.distinct(RecurringDonation.donor_user_id))).where(
            RecurringDonation.campaign_id == campaign_id,
            RecurringDonation.status == RecurringStatus.ACTIVE.value,
        )
    ).one()
    monthly = 0.0
    plans = 0
    for interval, count, total in rows:
        plans += int(count)
        per_month = WEEKS_PER_MONTH if interval == RecurringInterval.WEEKLY else 1
        monthly += int(total) * per_month
    return MonthlyGiving(
        campaign_id=campaign.id,
        donors=int(donors),
        active_plans=plans,
        monthly_amount_cents=round(monthly),
        currency=campaign.currency,
    )


def failing_plans(
    session: Session, *, principal: Principal | None, first: int, after: str | None
) -> Page[RecurringDonation]:
    """Admins: plans whose last charge was declined (retrying, or PAUSED by
    declines), newest first."""
    require_admin(principal)
    query = select(RecurringDonation).where(
        col(RecurringDonation.failure_reason).is_not(None),
        or_(
            RecurringDonation.status == RecurringStatus.ACTIVE.value,
            RecurringDonation.status == RecurringStatus.PAUSED.value,
        ),
    )
    return newest_first(session, query, first=first, after=after)

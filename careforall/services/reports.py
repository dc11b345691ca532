"""Reports: anyone with a token tells the admins a campaign is not what it
says; the reports reach the review queue and the admins' report list.

Repeats are limited by the reporter's address (kept with the report): one
report of a campaign a day, and a few reports a day in all, so one person
cannot bury a campaign in reports (the API's rate limits come on top).
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, func, select

from careforall.domain.clock import new_id, utcnow
from careforall.domain.errors import BadUserInput, RateLimited
from careforall.domain.events import CampaignReported
from careforall.domain.rules import Principal, require_admin, require_principal
from careforall.models import CampaignReport
from careforall.services.campaigns import locked_campaign
from careforall.services.pagination import Page, newest_first
from careforall.services.unit_of_work import UnitOfWork

REASON_LIMIT = 1000
WINDOW = timedelta(days=1)
PER_ADDRESS = 10  # reports from one address a day, all campaigns together


def _reason(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= REASON_LIMIT:
        raise BadUserInput(f"reason must be 1 to {REASON_LIMIT:,} characters long.")
    return value


def _check_repeats(
    session: Session, *, campaign_id: str, address: str, scope: str
) -> None:
    since = utcnow() - WINDOW
    recent = select(func.count()).where(
        CampaignReport.reporter_address == address,
        col(CampaignReport.created_at) > since,
    )
    if session.exec(recent).one() >= PER_ADDRESS:
        raise RateLimited(
            "Too many reports from your address today; try again tomorrow.",
            retry_after_seconds=int(WINDOW.total_seconds()),
        )
    same = select(func.count()).where(
        CampaignReport.campaign_id == campaign_id,
        (CampaignReport.reporter_address == address)
        | (CampaignReport.reporter_scope == scope),
        col(CampaignReport.created_at) > since,
    )
    if session.exec(same).one() > 0:
        raise RateLimited(
            "You reported this campaign already; the admins will look at it.",
            retry_after_seconds=int(WINDOW.total_seconds()),
        )


def report_campaign(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    campaign_id: str,
    reason: str,
    address: str,
) -> CampaignReport:
    """Someone, signed in or anonymous, reports a campaign they can see."""
    reporter = require_principal(principal)
    report = CampaignReport(
        id=new_id("rpt"),
        campaign_id=campaign_id,
        reporter_scope=reporter.scope,
        reporter_address=address[:64],
        reason=_reason(reason),
    )
    with uow:
        campaign = locked_campaign(uow, reporter, campaign_id, manage=False)
        _check_repeats(
            uow.session,
            campaign_id=campaign.id,
            address=report.reporter_address,
            scope=reporter.scope,
        )
        uow.session.add(report)
        uow.emit(CampaignReported(campaign_id=campaign.id, report_id=report.id))
        uow.commit()
    return report


def reports(
    session: Session,
    *,
    principal: Principal | None,
    first: int,
    after: str | None,
    campaign_id: str | None = None,
) -> Page[CampaignReport]:
    """Admins: reports, newest first; of one campaign when given."""
    require_admin(principal)
    query = select(CampaignReport)
    if campaign_id is not None:
        query = query.where(CampaignReport.campaign_id == campaign_id)
    return newest_first(session, query, first=first, after=after)

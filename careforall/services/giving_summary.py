"""A donor's yearly giving summary for tax purposes: every donation paid in
a year (CAPTURED; refunded ones are not gifts), one-off and recurring alike,
with the total per currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from careforall.domain.errors import BadUserInput
from careforall.domain.rules import Principal, require_user
from careforall.domain.states import PledgeStatus
from careforall.models import Campaign, Pledge

FIRST_YEAR = 2000
LAST_YEAR = 2200


@dataclass(frozen=True)
class SummaryLine:
    pledge_id: str
    paid_at: datetime
    campaign_id: str
    campaign_title: str
    amount_cents: int
    currency: str
    recurring: bool


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    amount_cents: int
    donations: int


@dataclass(frozen=True)
class YearSummary:
    year: int
    lines: list[SummaryLine]
    totals: list[CurrencyTotal]


def yearly_summary(
    session: Session, *, principal: Principal | None, year: int
) -> YearSummary:
    """The caller's donations paid in `year` (UTC), oldest first."""
    donor = require_user(principal)
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise BadUserInput(f"year must be from {FIRST_YEAR} to {LAST_YEAR}.")
    start = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    rows = session.exec(
        select(Pledge, Campaign.title)
        .join(Campaign, col(Campaign.id) == col(Pledge.campaign_id))
        .where(
            Pledge.donor_user_id == donor.id,
            Pledge.status == PledgeStatus.CAPTURED.value,
            col(Pledge.created_at) >= start,
            col(Pledge.created_at) < end,
        )
        .order_by(col(Pledge.id))
    ).all()
    lines = [
        SummaryLine(
            pledge_id=pledge.id,
            paid_at=pledge.created_at,
            campaign_id=pledge.campaign_id,
            campaign_title=title,
            amount_cents=pledge.amount_cents,
            currency=pledge.currency,
            recurring=pledge.recurring_donation_id is not None,
        )
        for pledge, title in rows
    ]
    sums: dict[str, tuple[int, int]] = {}
    for line in lines:
        total, count = sums.get(line.currency, (0, 0))
        sums[line.currency] = (total + line.amount_cents, count + 1)
    totals = [
        CurrencyTotal(currency=c, amount_cents=t, donations=n)
        for c, (t, n) in sorted(sums.items())
    ]
    return YearSummary(year=year, lines=lines, totals=totals)

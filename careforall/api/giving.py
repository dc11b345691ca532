"""A donor's yearly giving summary (tax purposes); the CSV of it is served by
`endpoints/giving_summary.py`."""

from __future__ import annotations

from datetime import datetime

import strawberry

from careforall.api.mapping import from_attributes
from careforall.api.resolvers import read_as_caller
from careforall.api.types import Info
from careforall.services import giving_summary


@strawberry.type(description="One donation paid in the year.")
class GivingSummaryLine:
    pledge_id: strawberry.ID
    paid_at: datetime
    campaign_id: strawberry.ID
    campaign_title: str
    amount_cents: int
    currency: str
    recurring: bool = strawberry.field(description="A recurring gift's charge.")


@strawberry.type
class GivingSummaryTotal:
    currency: str
    amount_cents: int
    donations: int


@strawberry.type(
    description="A year's donations paid (CAPTURED; refunds are not gifts)."
)
class GivingSummary:
    year: int
    lines: list[GivingSummaryLine]
    totals: list[GivingSummaryTotal] = strawberry.field(
        description="Per currency, alphabetical."
    )


@strawberry.type
class GivingQuery:
    @strawberry.field(
        description="Signed-in users. The caller's donations paid in `year` "
        "(UTC), oldest first; also as CSV at /account/giving/<year>.csv."
    )
    async def my_giving_summary(self, info: Info, year: int) -> GivingSummary:
        summary = await read_as_caller(
            info,
            lambda session, principal: giving_summary.yearly_summary(
                session, principal=principal, year=year
            ),
        )
        return GivingSummary(
            year=summary.year,
            lines=[from_attributes(GivingSummaryLine, line) for line in summary.lines],
            totals=[from_attributes(GivingSummaryTotal, t) for t in summary.totals],
        )

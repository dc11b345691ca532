"""GraphQL input types and their conversion to service data."""

from __future__ import annotations

from datetime import datetime

import strawberry

from careforall.api.mapping import from_attributes
from careforall.services.campaigns import CampaignData
from careforall.services.pledges import PledgeData


@strawberry.input
class CampaignInput:
    title: str
    description: str
    category: str
    goal_cents: int
    currency: str = "USD"
    ends_at: datetime | None = None

    def to_data(self) -> CampaignData:
        return from_attributes(CampaignData, self)


@strawberry.input
class PledgeInput:
    campaign_id: strawberry.ID
    amount_cents: int
    currency: str = "USD"
    idempotency_key: str
    donor_name: str | None = None
    message: str | None = None
    donor_email: str | None = strawberry.field(
        default=None,
        description="Where a guest's receipt goes (optional); never shown "
        "publicly. Verifying this address later brings the donation into the "
        "account.",
    )
    campaign_updates: bool = strawberry.field(
        default=False,
        description="Email me this campaign's updates: the donor asks for the "
        "organiser's updates by mail (to the account's address, or to "
        "donorEmail for a guest), sent while the donation stands. Never on "
        "unless asked.",
    )

    def to_data(self) -> PledgeData:
        return from_attributes(PledgeData, self, campaign_id=str(self.campaign_id))

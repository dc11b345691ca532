"""GraphQL input types and their conversion to service data."""

from __future__ import annotations

from datetime import datetime

import strawberry

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
        return CampaignData(
            title=self.title,
            description=self.description,
            category=self.category,
            goal_cents=self.goal_cents,
            currency=self.currency,
            ends_at=self.ends_at,
        )


@strawberry.input
class PledgeInput:
    campaign_id: strawberry.ID
    amount_cents: int
    currency: str = "USD"
    idempotency_key: str
    donor_name: str | None = None
    message: str | None = None

    def to_data(self) -> PledgeData:
        return PledgeData(
            campaign_id=str(self.campaign_id),
            amount_cents=self.amount_cents,
            currency=self.currency,
            idempotency_key=self.idempotency_key,
            donor_name=self.donor_name,
            message=self.message,
        )

"""What makes a campaign believable: its organiser's updates, the payouts
admins record, and reports from anyone who doubts it."""

from __future__ import annotations

from datetime import datetime

import strawberry

from careforall import models
from careforall.api.mapping import from_attributes
from careforall.api.pagination import Connection
from careforall.api.ratelimit import client_address
from careforall.api.resolvers import read_page, write
from careforall.api.types import CampaignUpdate, Info, Payout
from careforall.services import campaign_updates, payouts, reports


@strawberry.type(description="Someone's report that a campaign is not what it says.")
class CampaignReport:
    id: strawberry.ID
    campaign_id: strawberry.ID
    reason: str
    reporter: str = strawberry.field(
        description='Who reported: "user:<id>" or "anon:<session id>".'
    )
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.CampaignReport) -> CampaignReport:
        return from_attributes(
            cls,
            row,
            campaign_id=strawberry.ID(row.campaign_id),
            reporter=row.reporter_scope,
        )


@strawberry.type
class TrustQuery:
    @strawberry.field(
        description="Admin. Reports, newest first; of one campaign when given."
    )
    async def admin_reports(
        self,
        info: Info,
        campaign_id: strawberry.ID | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[CampaignReport]:
        return await read_page(
            info,
            reports.reports,
            CampaignReport.from_model,
            first,
            after,
            campaign_id=str(campaign_id) if campaign_id is not None else None,
        )


@strawberry.type
class TrustMutation:
    @strawberry.mutation(description="The campaign's organiser.")
    async def post_campaign_update(
        self, info: Info, campaign_id: strawberry.ID, title: str, body: str
    ) -> CampaignUpdate:
        row = await write(
            info,
            campaign_updates.post_update,
            campaign_id=str(campaign_id),
            title=title,
            body=body,
        )
        return CampaignUpdate.from_model(row)

    @strawberry.mutation(
        description="Admin. At most what was raised (net of refunds) less what "
        "was paid out already; paidAt defaults to now."
    )
    async def record_payout(
        self,
        info: Info,
        campaign_id: strawberry.ID,
        amount_cents: int,
        recipient: str,
        reference: str,
        paid_at: datetime | None = None,
    ) -> Payout:
        row = await write(
            info,
            payouts.record_payout,
            campaign_id=str(campaign_id),
            amount_cents=amount_cents,
            recipient=recipient,
            reference=reference,
            paid_at=paid_at,
        )
        return Payout.from_model(row)

    @strawberry.mutation(
        description="Anyone with a token, signed in or anonymous; reason 1 to "
        "1,000 characters. One report of a campaign a day from one address."
    )
    async def report_campaign(self, info: Info, id: strawberry.ID, reason: str) -> bool:
        settings = info.context.runtime.settings
        address = client_address(info.context.request, settings.trusted_proxies)
        await write(
            info,
            reports.report_campaign,
            campaign_id=str(id),
            reason=reason,
            address=address,
        )
        return True

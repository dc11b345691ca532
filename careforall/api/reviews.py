"""Review: admins approve, reject and suspend campaigns, and read the queue."""

from __future__ import annotations

import strawberry

from careforall.api.pagination import Connection
from careforall.api.resolvers import read_page, write
from careforall.api.types import Campaign, Info
from careforall.domain.states import CampaignStatus
from careforall.services import reviews


@strawberry.type(description="One of an organiser's campaigns, as an admin sees it.")
class OrganiserCampaign:
    id: strawberry.ID
    title: str
    status: CampaignStatus


@strawberry.type(
    description="A campaign waiting for review, with its organiser's history."
)
class ReviewQueueEntry:
    campaign: Campaign
    report_count: int = strawberry.field(description="Reports against this campaign.")
    organiser_campaigns: list[OrganiserCampaign] = strawberry.field(
        description="Its organiser's campaigns, this one too, newest first (the "
        "newest 20)."
    )
    organiser_report_count: int = strawberry.field(
        description="Reports against any of the organiser's campaigns."
    )

    @classmethod
    def from_entry(cls, entry: reviews.QueueEntry) -> ReviewQueueEntry:
        return cls(
            campaign=Campaign.from_model(entry.campaign),
            report_count=entry.report_count,
            organiser_campaigns=[
                OrganiserCampaign(
                    id=strawberry.ID(c.id),
                    title=c.title,
                    status=CampaignStatus(c.status),
                )
                for c in entry.organiser_campaigns
            ],
            organiser_report_count=entry.organiser_report_count,
        )


@strawberry.type
class ReviewQuery:
    @strawberry.field(description="Admin. Campaigns IN_REVIEW, oldest first.")
    async def admin_review_queue(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[ReviewQueueEntry]:
        return await read_page(
            info, reviews.review_queue, ReviewQueueEntry.from_entry, first, after
        )


@strawberry.type
class ReviewMutation:
    @strawberry.mutation(
        description="Admin: IN_REVIEW -> ACTIVE, or REJECTED with the note "
        "(required to reject)."
    )
    async def review_campaign(
        self,
        info: Info,
        id: strawberry.ID,
        approve: bool,
        note: str | None = None,
    ) -> Campaign:
        row = await write(
            info,
            reviews.review_campaign,
            campaign_id=str(id),
            approve=approve,
            note=note,
        )
        return Campaign.from_model(row)

    @strawberry.mutation(
        description="Admin: an ACTIVE or PAUSED campaign stops taking pledges, "
        "with a public note; setCampaignStatus ACTIVE lifts it."
    )
    async def suspend_campaign(
        self, info: Info, id: strawberry.ID, note: str
    ) -> Campaign:
        row = await write(
            info, reviews.suspend_campaign, campaign_id=str(id), note=note
        )
        return Campaign.from_model(row)

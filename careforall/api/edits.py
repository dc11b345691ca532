"""Editing campaigns: updateCampaign, and the kept history for admins."""

from __future__ import annotations

from datetime import datetime

import strawberry

from careforall import models
from careforall.api.mapping import from_attributes
from careforall.api.pagination import Connection
from careforall.api.resolvers import read_page, write
from careforall.api.types import Campaign, Info
from careforall.services import campaign_edits


@strawberry.input(description="Only the fields given change.")
class CampaignEditInput:
    title: str | None = None
    description: str | None = None
    category: str | None = None
    goal_cents: int | None = None
    ends_at: datetime | None = strawberry.field(
        default=strawberry.UNSET,
        description="A new deadline in the future; null removes the deadline.",
    )

    def to_changes(self) -> campaign_edits.CampaignChanges:
        given = self.ends_at is not strawberry.UNSET
        ends_at = self.ends_at if given else None
        return campaign_edits.CampaignChanges(
            title=self.title,
            description=self.description,
            category=self.category,
            goal_cents=self.goal_cents,
            ends_at=ends_at,
            clear_ends_at=given and ends_at is None,
        )


@strawberry.type(description="One field of a campaign changed: who, when, from, to.")
class CampaignEditEntry:
    id: strawberry.ID
    campaign_id: strawberry.ID
    actor_id: strawberry.ID
    at: datetime
    field: str = strawberry.field(description="e.g. title, goal_cents, ends_at.")
    old_value: str | None
    new_value: str | None

    @classmethod
    def from_model(cls, row: models.CampaignEdit) -> CampaignEditEntry:
        return from_attributes(
            cls,
            row,
            id=strawberry.ID(str(row.id)),
            campaign_id=strawberry.ID(row.campaign_id),
            actor_id=strawberry.ID(row.actor_user_id),
        )


@strawberry.type
class EditQuery:
    @strawberry.field(description="Admin. A campaign's edits, newest first.")
    async def admin_campaign_edits(
        self,
        info: Info,
        campaign_id: strawberry.ID,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[CampaignEditEntry]:
        return await read_page(
            info,
            campaign_edits.edit_history,
            CampaignEditEntry.from_model,
            first,
            after,
            campaign_id=str(campaign_id),
        )


@strawberry.type
class EditMutation:
    @strawberry.mutation(description="Its owner or an admin.")
    async def update_campaign(
        self, info: Info, id: strawberry.ID, input: CampaignEditInput
    ) -> Campaign:
        row = await write(
            info,
            campaign_edits.update_campaign,
            campaign_id=str(id),
            changes=input.to_changes(),
        )
        return Campaign.from_model(row)

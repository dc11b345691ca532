"""Query resolvers: parse, call one service, map."""

from __future__ import annotations

import strawberry
from sqlmodel import Session

from careforall import __version__, models
from careforall.api.pagination import Connection, connection, page_size
from careforall.api.resolvers import read, read_as_caller, read_page
from careforall.api.types import (
    Campaign,
    CampaignTotals,
    Info,
    Organisation,
    Pledge,
    User,
)
from careforall.concurrency import in_thread
from careforall.domain.errors import Unauthenticated
from careforall.domain.rules import Principal, hidden_from_public, may_see_campaign
from careforall.domain.search import CampaignSort
from careforall.domain.states import CampaignStatus
from careforall.services import auth, campaigns, discovery, pledges, totals


@strawberry.type
class Query:
    @strawberry.field(
        description="The running CareForAll version (semantic versioning)."
    )
    def version(self) -> str:
        return __version__

    @strawberry.field(
        description="The organisation named on receipts, as the mails name it."
    )
    def organisation(self, info: Info) -> Organisation:
        settings = info.context.runtime.settings
        return Organisation(
            name=settings.org_name,
            address=settings.org_address,
            tax_id=settings.org_tax_id,
        )

    @strawberry.field(description="Null when anonymous or not signed in.")
    async def me(self, info: Info) -> User | None:
        if info.context.token is None:
            return None  # no token: no caller to read

        def read_me(
            session: Session, principal: Principal | None
        ) -> models.User | None:
            if principal is None or not principal.is_user:
                return None
            user = auth.get_user(session, principal.id)
            if user is None:
                raise Unauthenticated("This account no longer exists; sign in again.")
            return user

        user = await read_as_caller(info, read_me)
        return User.from_model(user) if user is not None else None

    @strawberry.field(
        description="In `sort`'s order, ties newest first; a `search` (words "
        "of titles and stories, the last one a prefix) in the default order "
        "lists the best matches first. Campaigns IN_REVIEW or REJECTED are never "
        "listed (their organiser has myCampaigns, admins adminReviewQueue)."
    )
    async def campaigns(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        status: CampaignStatus | None = None,
        search: str | None = None,
        category: str | None = None,
        sort: CampaignSort = CampaignSort.NEWEST,
    ) -> Connection[Campaign]:
        # Public: the one page read that does not depend on the caller.
        size = page_size(first)
        page = await read(
            info,
            lambda session: campaigns.list_campaigns(
                session,
                first=size,
                after=after,
                status=status,
                search=search,
                category=category,
                sort=sort,
            ),
        )
        return connection(page, Campaign.from_model)

    @strawberry.field(
        description="The categories of the listed campaigns, most used first."
    )
    async def categories(self, info: Info) -> list[str]:
        return await read(info, discovery.public_categories)

    @strawberry.field(
        description="The signed-in caller's own campaigns, every status, newest first."
    )
    async def my_campaigns(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Campaign]:
        return await read_page(
            info, campaigns.my_campaigns, Campaign.from_model, first, after
        )

    @strawberry.field(
        description="Null for a campaign IN_REVIEW or REJECTED, but to its "
        "organiser and admins."
    )
    async def campaign(self, info: Info, id: strawberry.ID) -> Campaign | None:
        row = await read(info, lambda session: campaigns.get_campaign(session, str(id)))
        if row is None:
            return None
        if hidden_from_public(row):
            # Only now is the caller read: a public campaign's answer is the
            # same for everyone (and a stale token does not spoil it).
            context = info.context
            context.answer_is_personal()
            principal = await in_thread(lambda: context.principal)
            if not may_see_campaign(principal, row):
                return None
        return Campaign.from_model(row)

    @strawberry.field
    def campaign_totals(  # sync: see careforall/api/resolvers.py
        self, info: Info, campaign_id: strawberry.ID
    ) -> CampaignTotals | None:
        row = totals.campaign_totals(info.context.runtime.db, str(campaign_id))
        return CampaignTotals.from_model(row) if row is not None else None

    @strawberry.field(
        description="For its donor (user or anonymous session) or an admin."
    )
    async def pledge(self, info: Info, id: strawberry.ID) -> Pledge | None:
        row = await read_as_caller(
            info,
            lambda session, principal: pledges.get_pledge(
                session, principal=principal, pledge_id=str(id)
            ),
        )
        return Pledge.from_model(row) if row is not None else None

    @strawberry.field(
        description="The caller's pledges, newest first; users and anonymous sessions."
    )
    async def my_donations(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Pledge]:
        return await read_page(
            info, pledges.my_donations, Pledge.from_model, first, after
        )

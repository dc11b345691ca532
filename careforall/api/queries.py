"""Query resolvers: parse, call one service, map."""

from __future__ import annotations

import strawberry

from careforall import __version__
from careforall.api.pagination import Connection, connection, page_size
from careforall.api.resolvers import read_page
from careforall.api.types import (
    Campaign,
    CampaignTotals,
    Info,
    Pledge,
    User,
)
from careforall.domain.errors import Unauthenticated
from careforall.domain.states import CampaignStatus
from careforall.services import auth, campaigns, pledges, totals


@strawberry.type
class Query:
    @strawberry.field(
        description="The running CareForAll version (semantic versioning)."
    )
    def version(self) -> str:
        return __version__

    @strawberry.field(description="Null when anonymous or not signed in.")
    def me(self, info: Info) -> User | None:
        principal = info.context.principal
        if principal is None or not principal.is_user:
            return None
        with info.context.runtime.db.read() as session:
            user = auth.get_user(session, principal.id)
        if user is None:
            raise Unauthenticated("This account no longer exists; sign in again.")
        return User.from_model(user)

    @strawberry.field
    def campaigns(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        status: CampaignStatus | None = None,
    ) -> Connection[Campaign]:
        # Public: the one page read that does not depend on the caller.
        with info.context.runtime.db.read() as session:
            page = campaigns.list_campaigns(
                session, first=page_size(first), after=after, status=status
            )
        return connection(page, Campaign.from_model)

    @strawberry.field(
        description="The signed-in caller's own campaigns, every status, newest first."
    )
    def my_campaigns(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Campaign]:
        return read_page(
            info, campaigns.my_campaigns, Campaign.from_model, first, after
        )

    @strawberry.field
    def campaign(self, info: Info, id: strawberry.ID) -> Campaign | None:
        with info.context.runtime.db.read() as session:
            row = campaigns.get_campaign(session, str(id))
        return Campaign.from_model(row) if row is not None else None

    @strawberry.field
    def campaign_totals(
        self, info: Info, campaign_id: strawberry.ID
    ) -> CampaignTotals | None:
        row = totals.campaign_totals(info.context.runtime.db, str(campaign_id))
        return CampaignTotals.from_model(row) if row is not None else None

    @strawberry.field(
        description="For its donor (user or anonymous session) or an admin."
    )
    def pledge(self, info: Info, id: strawberry.ID) -> Pledge | None:
        principal = info.context.principal
        with info.context.runtime.db.read() as session:
            row = pledges.get_pledge(session, principal=principal, pledge_id=str(id))
        return Pledge.from_model(row) if row is not None else None

    @strawberry.field(
        description="The caller's pledges, newest first; users and anonymous sessions."
    )
    def my_donations(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Pledge]:
        return read_page(info, pledges.my_donations, Pledge.from_model, first, after)

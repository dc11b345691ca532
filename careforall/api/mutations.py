"""Mutation resolvers: parse, call one write service off the event loop, map."""

from __future__ import annotations

import strawberry

from careforall.api.inputs import CampaignInput, PledgeInput
from careforall.api.types import (
    AuthPayload,
    Campaign,
    Info,
    Pledge,
    User,
)
from careforall.domain.states import CampaignStatus
from careforall.services import auth, campaigns, payments, pledges
from careforall.services.auth import AuthResult


def _payload(result: AuthResult) -> AuthPayload:
    return AuthPayload(
        token=result.token,
        user=User.from_model(result.user) if result.user is not None else None,
        anonymous=result.anonymous,
    )


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def register(
        self,
        info: Info,
        email: str,
        password: str,
        name: str,
        anonymous_token: str | None = None,
    ) -> AuthPayload:
        rt = info.context.runtime
        result = await rt.write(
            auth.register,
            rt.uow(),
            keys=rt.keys,
            email=email,
            password=password,
            name=name,
            anonymous_token=anonymous_token,
        )
        return _payload(result)

    @strawberry.mutation
    async def login(
        self, info: Info, email: str, password: str, anonymous_token: str | None = None
    ) -> AuthPayload:
        rt = info.context.runtime
        result = await rt.write(
            auth.login,
            rt.uow(),
            keys=rt.keys,
            email=email,
            password=password,
            anonymous_token=anonymous_token,
        )
        return _payload(result)

    @strawberry.mutation
    async def start_anonymous_session(self, info: Info) -> AuthPayload:
        rt = info.context.runtime
        return _payload(
            await rt.write(auth.start_anonymous_session, rt.uow(), keys=rt.keys)
        )

    @strawberry.mutation(description="Signed-in users.")
    async def create_campaign(self, info: Info, input: CampaignInput) -> Campaign:
        rt = info.context.runtime
        row = await rt.write(
            campaigns.create_campaign,
            rt.uow(),
            principal=info.context.principal,
            data=input.to_data(),
        )
        return Campaign.from_model(row)

    @strawberry.mutation(description="Its owner or an admin.")
    async def set_campaign_status(
        self, info: Info, id: strawberry.ID, status: CampaignStatus
    ) -> Campaign:
        rt = info.context.runtime
        row = await rt.write(
            campaigns.set_campaign_status,
            rt.uow(),
            principal=info.context.principal,
            campaign_id=str(id),
            status=status,
        )
        return Campaign.from_model(row)

    @strawberry.mutation(description="Signed-in or anonymous session.")
    async def create_pledge(self, info: Info, input: PledgeInput) -> Pledge:
        rt = info.context.runtime
        row = await rt.write_grouped(
            pledges.create_pledge,
            principal=info.context.principal,
            data=input.to_data(),
        )
        return Pledge.from_model(row)

    @strawberry.mutation(description="The pledge's donor.")
    async def authorize_payment(
        self, info: Info, pledge_id: strawberry.ID, payment_method: str
    ) -> Pledge:
        rt = info.context.runtime
        row = await rt.write(
            payments.authorize_payment,
            rt.uow(),
            provider=rt.provider,
            principal=info.context.principal,
            pledge_id=str(pledge_id),
            payment_method=payment_method,
        )
        return Pledge.from_model(row)

    @strawberry.mutation(description="Admin.")
    async def capture_payment(self, info: Info, pledge_id: strawberry.ID) -> Pledge:
        rt = info.context.runtime
        row = await rt.write(
            payments.capture_payment,
            rt.uow(),
            provider=rt.provider,
            principal=info.context.principal,
            pledge_id=str(pledge_id),
        )
        return Pledge.from_model(row)

    @strawberry.mutation(description="Admin.")
    async def refund_payment(self, info: Info, pledge_id: strawberry.ID) -> Pledge:
        rt = info.context.runtime
        row = await rt.write(
            payments.refund_payment,
            rt.uow(),
            provider=rt.provider,
            principal=info.context.principal,
            pledge_id=str(pledge_id),
        )
        return Pledge.from_model(row)

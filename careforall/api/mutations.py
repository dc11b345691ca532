"""Mutation resolvers: parse, call one write service off the event loop, map."""

from __future__ import annotations

from collections.abc import Callable

import strawberry

from careforall import models
from careforall.api.inputs import CampaignInput, PledgeInput
from careforall.api.resolvers import signed_in, write
from careforall.api.types import (
    AuthPayload,
    Campaign,
    Info,
    Pledge,
)
from careforall.domain.states import CampaignStatus, PledgeStatus
from careforall.services import auth, campaigns, payments, pledges, refunds


async def _payment(
    info: Info,
    service: Callable[..., models.Pledge],
    pledge_id: strawberry.ID,
    **kwargs: object,
) -> Pledge:
    """A payment step on one pledge, through the provider."""
    row = await write(
        info,
        service,
        provider=info.context.runtime.provider,
        pledge_id=str(pledge_id),
        **kwargs,
    )
    return Pledge.from_model(row)


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
        return await signed_in(
            info,
            auth.register,
            email=email,
            password=password,
            name=name,
            anonymous_token=anonymous_token,
        )

    @strawberry.mutation
    async def login(
        self, info: Info, email: str, password: str, anonymous_token: str | None = None
    ) -> AuthPayload:
        return await signed_in(
            info,
            auth.login,
            email=email,
            password=password,
            anonymous_token=anonymous_token,
        )

    @strawberry.mutation
    async def start_anonymous_session(self, info: Info) -> AuthPayload:
        return await signed_in(info, auth.start_anonymous_session)

    @strawberry.mutation(description="Signed-in users.")
    async def create_campaign(self, info: Info, input: CampaignInput) -> Campaign:
        row = await write(
            info,
            campaigns.create_campaign,
            data=input.to_data(),
            review=info.context.runtime.settings.review_required,
        )
        return Campaign.from_model(row)

    @strawberry.mutation(description="Its owner or an admin.")
    async def set_campaign_status(
        self, info: Info, id: strawberry.ID, status: CampaignStatus
    ) -> Campaign:
        row = await write(
            info, campaigns.set_campaign_status, campaign_id=str(id), status=status
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
        return await _payment(
            info,
            payments.authorize_payment,
            pledge_id,
            payment_method=payment_method,
        )

    @strawberry.mutation(description="Admin.")
    async def capture_payment(self, info: Info, pledge_id: strawberry.ID) -> Pledge:
        return await _payment(
            info, payments.move_payment, pledge_id, target=PledgeStatus.CAPTURED
        )

    @strawberry.mutation(
        description="Admin. With `amountCents` (an addition; Stripe only), "
        "refunds that part of a CAPTURED pledge: it stays CAPTURED and the "
        "totals drop by exactly that; all that is left is a whole refund."
    )
    async def refund_payment(
        self,
        info: Info,
        pledge_id: strawberry.ID,
        amount_cents: int | None = None,
    ) -> Pledge:
        if amount_cents is not None:
            row = await write(
                info,
                refunds.refund_in_part,
                provider=info.context.runtime.provider,
                pledge_id=str(pledge_id),
                amount_cents=amount_cents,
            )
            if row is not None:
                return Pledge.from_model(row)
        return await _payment(
            info, payments.move_payment, pledge_id, target=PledgeStatus.REFUNDED
        )

    @strawberry.mutation(
        description="Admin: release an AUTHORIZED pledge's authorization "
        "without capturing it (nothing is charged); the pledge becomes FAILED."
    )
    async def cancel_payment(self, info: Info, pledge_id: strawberry.ID) -> Pledge:
        return await _payment(
            info, payments.move_payment, pledge_id, target=PledgeStatus.FAILED
        )

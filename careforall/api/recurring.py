"""Recurring gifts: a signed-in donor's plans, started, changed and cancelled."""

from __future__ import annotations

import strawberry

from careforall.api.mapping import from_attributes
from careforall.api.pagination import Connection
from careforall.api.resolvers import read_as_caller, read_page, write
from careforall.api.types import Info, RecurringDonation
from careforall.domain.recurring import RecurringInterval
from careforall.services import recurring, recurring_stats
from careforall.services.recurring import RecurringData


@strawberry.input
class RecurringDonationInput:
    campaign_id: strawberry.ID
    amount_cents: int
    currency: str = "USD"
    interval: RecurringInterval = RecurringInterval.MONTHLY
    payment_method: str
    idempotency_key: str

    def to_data(self) -> RecurringData:
        return RecurringData(
            campaign_id=str(self.campaign_id),
            amount_cents=self.amount_cents,
            payment_method=self.payment_method,
            idempotency_key=self.idempotency_key,
            currency=self.currency,
            interval=self.interval,
        )


@strawberry.input(description="Only the fields given change; for periods to come.")
class RecurringDonationUpdateInput:
    amount_cents: int | None = None
    payment_method: str | None = strawberry.field(
        default=None, description="A new card, kept with the provider."
    )


@strawberry.type(description="A campaign's ACTIVE recurring gifts.")
class MonthlyGiving:
    campaign_id: strawberry.ID
    donors: int = strawberry.field(description="Donors with an ACTIVE plan.")
    active_plans: int
    monthly_amount_cents: int = strawberry.field(
        description="What they give a month (a weekly gift counts 52/12 times)."
    )
    currency: str


@strawberry.type
class RecurringQuery:
    @strawberry.field(description="The campaign's organiser or an admin.")
    async def campaign_monthly_giving(
        self, info: Info, campaign_id: strawberry.ID
    ) -> MonthlyGiving:
        figures = await read_as_caller(
            info,
            lambda session, principal: recurring_stats.monthly_giving(
                session, principal=principal, campaign_id=str(campaign_id)
            ),
        )
        return from_attributes(MonthlyGiving, figures)

    @strawberry.field(
        description="Admin. Plans whose last charge was declined (retrying or "
        "PAUSED), newest first."
    )
    async def admin_failing_recurring_donations(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[RecurringDonation]:
        return await read_page(
            info,
            recurring_stats.failing_plans,
            RecurringDonation.from_model,
            first,
            after,
        )

    @strawberry.field(
        description="Signed-in users. The caller's plans, newest first (the latest 50)."
    )
    async def my_recurring_donations(self, info: Info) -> list[RecurringDonation]:
        rows = await read_as_caller(
            info,
            lambda session, principal: recurring.my_recurring_donations(
                session, principal=principal
            ),
        )
        return [RecurringDonation.from_model(r) for r in rows]


@strawberry.type
class RecurringMutation:
    @strawberry.mutation(
        description="Signed-in users. The first period is charged at once; a "
        "declined first period leaves the plan PAUSED."
    )
    async def create_recurring_donation(
        self, info: Info, input: RecurringDonationInput
    ) -> RecurringDonation:
        row = await write(
            info,
            recurring.create_recurring_donation,
            provider=info.context.runtime.provider,
            data=input.to_data(),
        )
        return RecurringDonation.from_model(row)

    @strawberry.mutation(
        description="Its donor or an admin. No further charge; past ones stay."
    )
    async def cancel_recurring_donation(
        self, info: Info, id: strawberry.ID
    ) -> RecurringDonation:
        row = await write(info, recurring.cancel_recurring_donation, plan_id=str(id))
        return RecurringDonation.from_model(row)

    @strawberry.mutation(description="Its donor. No charge until resumed.")
    async def pause_recurring_donation(
        self, info: Info, id: strawberry.ID
    ) -> RecurringDonation:
        row = await write(info, recurring.pause_recurring_donation, plan_id=str(id))
        return RecurringDonation.from_model(row)

    @strawberry.mutation(
        description="Its donor. Charges again from the next period; a period "
        "left unpaid by declines is tried again at once."
    )
    async def resume_recurring_donation(
        self, info: Info, id: strawberry.ID
    ) -> RecurringDonation:
        row = await write(info, recurring.resume_recurring_donation, plan_id=str(id))
        return RecurringDonation.from_model(row)

    @strawberry.mutation(
        description="Its donor. A new amount or card for the periods to come."
    )
    async def update_recurring_donation(
        self, info: Info, id: strawberry.ID, input: RecurringDonationUpdateInput
    ) -> RecurringDonation:
        row = await write(
            info,
            recurring.update_recurring_donation,
            provider=info.context.runtime.provider,
            plan_id=str(id),
            amount_cents=input.amount_cents,
            payment_method=input.payment_method,
        )
        return RecurringDonation.from_model(row)

"""Mutation.startCheckout and Mutation.startPaymentSheet: paying on the
payment provider's own page (web) or with its SDK (mobile); and
Mutation.startCardSetup: saving a card there for a recurring gift. Additions
to the contract, answered only when the provider takes hosted payments
(Stripe)."""

from __future__ import annotations

import strawberry

from careforall.api.resolvers import write
from careforall.api.types import Info
from careforall.services import hosted_payments


@strawberry.type(description="The payment provider's page that takes a payment.")
class CheckoutSession:
    url: str = strawberry.field(
        description="Send the donor here; they come back to the campaign's page, "
        "which shows the pledge's state as the provider's events arrive."
    )


@strawberry.type(description="What a mobile app needs for Stripe's payment sheet.")
class PaymentSheet:
    client_secret: str = strawberry.field(
        description="The PaymentIntent's client secret (the same each time it "
        "is asked); the app confirms the payment with Stripe's SDK."
    )


@strawberry.type
class HostedPaymentMutation:
    @strawberry.mutation(
        description="The pledge's donor, for a PENDING pledge, with Stripe: the "
        "Checkout page to pay it on. BAD_USER_INPUT with the simulated provider."
    )
    async def start_checkout(
        self, info: Info, pledge_id: strawberry.ID
    ) -> CheckoutSession:
        url = await write(
            info,
            hosted_payments.start_checkout,
            provider=info.context.runtime.provider,
            pledge_id=str(pledge_id),
            public_url=info.context.runtime.settings.public_url,
        )
        return CheckoutSession(url=url)

    @strawberry.mutation(
        description="The pledge's donor, for a PENDING pledge, with Stripe: the "
        "client secret for Stripe's payment sheet in a mobile app."
    )
    async def start_payment_sheet(
        self, info: Info, pledge_id: strawberry.ID
    ) -> PaymentSheet:
        secret = await write(
            info,
            hosted_payments.payment_sheet_secret,
            provider=info.context.runtime.provider,
            pledge_id=str(pledge_id),
        )
        return PaymentSheet(client_secret=secret)

    @strawberry.mutation(
        description="Signed-in users, with Stripe: the Checkout page that saves a "
        "card for a recurring gift. The donor comes back to the campaign's page "
        "(with campaignId) or to My donations, with `card_setup=<id>` in the "
        "address: that id is the paymentMethod of createRecurringDonation or "
        "updateRecurringDonation. BAD_USER_INPUT with the simulated provider."
    )
    async def start_card_setup(
        self, info: Info, campaign_id: strawberry.ID | None = None
    ) -> CheckoutSession:
        url = await write(
            info,
            hosted_payments.start_card_setup,
            provider=info.context.runtime.provider,
            campaign_id=None if campaign_id is None else str(campaign_id),
            public_url=info.context.runtime.settings.public_url,
        )
        return CheckoutSession(url=url)

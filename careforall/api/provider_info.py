"""Query.paymentProvider: which payment provider takes the payments, and
whether it is the simulated one (no real money moves)."""

from __future__ import annotations

import strawberry

from careforall.api.types import Info

STRIPE_TEST_NOTICE = (
    "Payments go through Stripe in test mode: no card is charged. Use Stripe's "
    "test cards; any donation made here is a test."
)
SIMULATED_NOTICE = (
    "Payments here are simulated: no card is charged and no real money moves. "
    "Any donation made here is a test."
)


@strawberry.type(description="The payment provider in use.")
class PaymentProviderInfo:
    name: str = strawberry.field(description="`simulated` or `stripe`.")
    simulated: bool = strawberry.field(
        description="True when no real money moves: anyone can pay with the "
        "test card `pm_card_ok`. Clients say so on every payment page."
    )
    notice: str | None = strawberry.field(
        description="What to tell a donor about it, in words: with the simulated "
        "provider, or Stripe in test mode; null when payments are real."
    )


@strawberry.type
class ProviderQuery:
    @strawberry.field(
        description="Public. The payment provider in use, and whether payments "
        "are simulated."
    )
    def payment_provider(self, info: Info) -> PaymentProviderInfo:
        settings = info.context.runtime.settings
        simulated = settings.simulated_payments
        notice = SIMULATED_NOTICE if simulated else None
        if settings.stripe is not None and not settings.stripe.live:
            notice = STRIPE_TEST_NOTICE
        return PaymentProviderInfo(
            name=settings.payment_provider, simulated=simulated, notice=notice
        )

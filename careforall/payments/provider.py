"""What CareForAll needs of a payment provider.

A real provider (Stripe, Adyen, ...) implements `PaymentProvider` with its API
calls; its webhooks arrive at `/webhooks/payments` in the contract's format.
Every call must be idempotent per pledge: asking twice does the thing once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ProviderResult:
    approved: bool
    reason: str | None = None  # why a payment was declined, in words


class UnknownPaymentMethod(Exception):
    """The provider does not know this payment method; nothing was charged."""


class PaymentProvider(Protocol):
    def authorize(
        self, *, pledge_id: str, amount_cents: int, currency: str, payment_method: str
    ) -> ProviderResult: ...

    def capture(self, *, pledge_id: str) -> ProviderResult: ...

    def refund(self, *, pledge_id: str) -> ProviderResult: ...

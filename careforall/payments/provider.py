"""What CareForAll needs of a payment provider.

A real provider (Stripe, Adyen, ...) implements `PaymentProvider` with its API
calls; its webhooks arrive at `/webhooks/payments` in the contract's format.
Every call must be idempotent per pledge: asking twice does the thing once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


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


@runtime_checkable
class SavesPaymentMethods(Protocol):
    """A provider that keeps a donor's card for later charges (recurring gifts).

    The card stays with the provider: CareForAll keeps only its token.
    """

    def save_payment_method(self, *, donor_id: str, payment_method: str) -> str:
        """The token to charge `payment_method` with later; raises
        `UnknownPaymentMethod` for one the provider does not know."""
        ...

    def charge_saved(
        self, *, pledge_id: str, amount_cents: int, currency: str, token: str
    ) -> ProviderResult:
        """Authorize `pledge_id` off-session with a saved card; idempotent per
        pledge, as `authorize` is."""
        ...

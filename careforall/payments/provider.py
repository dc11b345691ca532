"""What CareForAll needs of a payment provider.

A real provider (Stripe, Adyen, ...) implements `PaymentProvider` with its API
calls (`payments/stripe.py`); its webhooks arrive at an endpoint of its own
(`/webhooks/stripe`) or at `/webhooks/payments` in the contract's format.
Every call must be idempotent per pledge: asking twice does the thing once.
A provider that cannot be reached, or that answers with a server error,
raises `ProviderUnavailable`: whether the call happened is unknown, and the
caller asks again later, the same way, never twice at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from careforall.domain.states import PledgeStatus


@dataclass(frozen=True)
class ProviderResult:
    approved: bool
    reason: str | None = None  # why a payment was declined, in words


@dataclass(frozen=True)
class PaymentState:
    """Where the provider says a pledge's payment is, when asked (reconcile)."""

    status: PledgeStatus
    reason: str | None = None  # why it failed, in words


class PaymentStates(Protocol):
    """A provider that can be asked for a payment's state, for pledges whose
    webhooks never came (`careforall payments reconcile`)."""

    def payment_state(self, *, pledge_id: str) -> PaymentState | None:
        """None: the provider has no payment for the pledge, or it is still
        open (the donor has not finished)."""
        ...


@runtime_checkable
class HostedPayments(Protocol):
    """A provider whose own pages or SDKs take the card (Stripe): the web app
    sends the donor to its hosted page, a mobile app confirms the payment
    with its SDK. Either way the webhooks tell how it went."""

    def checkout_url(
        self,
        *,
        pledge_id: str,
        amount_cents: int,
        currency: str,
        title: str,
        return_url: str,
    ) -> str:
        """The hosted page where the donor pays; back to `return_url` after."""
        ...

    def client_secret(self, *, pledge_id: str, amount_cents: int, currency: str) -> str:
        """The secret a mobile SDK confirms the pledge's payment with."""
        ...

    def card_setup_url(self, *, donor_id: str, return_url: str) -> str:
        """The hosted page where the donor saves a card for later charges
        (recurring gifts); back to `return_url` after, where
        `{CHECKOUT_SESSION_ID}` names the page's session, which
        `save_payment_method` then takes as the payment method."""
        ...


class PaymentRefused(Exception):
    """The provider refused to start a payment (an amount below its minimum,
    say); the message says why, in words."""


class UnknownPaymentMethod(Exception):
    """The provider does not know this payment method; nothing was charged."""


class ProviderUnavailable(Exception):
    """No answer from the provider (a timeout, a refused connection, a 5xx):
    the call may or may not have taken effect. Asking again later is safe,
    because every call is idempotent per pledge and step."""


class PaymentProvider(Protocol):
    def authorize(
        self, *, pledge_id: str, amount_cents: int, currency: str, payment_method: str
    ) -> ProviderResult: ...

    def capture(self, *, pledge_id: str) -> ProviderResult: ...

    def refund(
        self,
        *,
        pledge_id: str,
        amount_cents: int | None = None,
        refunded_cents: int = 0,
    ) -> ProviderResult:
        """Refund what is left, or `amount_cents` of it (a partial refund;
        `refunded_cents` were refunded before, which makes each partial
        refund a step of its own, idempotent on its own)."""
        ...

    def cancel(self, *, pledge_id: str) -> ProviderResult:
        """Release an authorization that was not captured: nothing is charged."""


@runtime_checkable
class ErasesCustomers(Protocol):
    """A provider that keeps a record of a donor (Stripe's Customer, holding
    their saved cards), to be deleted with the donor's account."""

    def erase_customer(self, customer_id: str) -> None:
        """Delete the customer and what it holds; one already deleted is no
        error. Raises `ProviderUnavailable` when the provider does not answer."""
        ...


@runtime_checkable
class SavesPaymentMethods(Protocol):
    """A provider that keeps a donor's card for later charges (recurring gifts).

    The card stays with the provider: CareForAll keeps only its token.
    """

    def save_payment_method(self, *, donor_id: str, payment_method: str) -> str:
        """The token to charge `payment_method` with later; raises
        `UnknownPaymentMethod` for one the provider does not know, and
        `PaymentRefused` for a card it will not keep (declined)."""
        ...

    def charge_saved(
        self,
        *,
        pledge_id: str,
        amount_cents: int,
        currency: str,
        token: str,
        donor_present: bool = False,
    ) -> ProviderResult:
        """Authorize `pledge_id` with a saved card; idempotent per pledge, as
        `authorize` is. `donor_present`: the donor is there (a plan's first
        period), otherwise the charge is off-session (and a bank that wants
        the donor to confirm it declines it)."""
        ...

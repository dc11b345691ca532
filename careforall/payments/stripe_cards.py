"""Saved cards with Stripe, for recurring gifts: a Customer per donor, cards
saved to it with a SetupIntent, and charges off-session.

As Stripe documents it ("Save payment details during payment", "Set up
future payments"): each donor has one Customer (made once, kept in
`stripe_customers`); a card is saved to it by a SetupIntent confirmed with
`usage=off_session`; a plan's first period is a PaymentIntent with the
customer and `setup_future_usage=off_session` (the donor is there), each
later period one with `off_session=true` (the donor is not). Every call
carries an idempotency key, so a retry after a timeout or a 5xx does it once.

A saved card's token is `<customer id>/<payment method id>`: a charge needs
both, and neither holds a `/`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stripe
from sqlmodel import select

from careforall.db import Database, InsertUnlessPresent
from careforall.domain.clock import utcnow
from careforall.models import StripeCustomer, table_of
from careforall.payments.provider import (
    PaymentRefused,
    ProviderResult,
    UnknownPaymentMethod,
)
from careforall.payments.stripe_calls import (
    UNANSWERED,
    authorize_intent,
    idempotency_key,
    result_of,
    unavailable,
)

_KEEP_CUSTOMER = InsertUnlessPresent(table_of(StripeCustomer), "user_id")


def token_of(customer_id: str, payment_method_id: str) -> str:
    return f"{customer_id}/{payment_method_id}"


def parse_token(token: str) -> tuple[str, str]:
    """The customer and payment method of a token; UnknownPaymentMethod for
    one that is not a saved Stripe card (a plan started with another provider)."""
    customer_id, _, method_id = token.partition("/")
    if not customer_id.startswith("cus_") or not method_id:
        raise UnknownPaymentMethod(token)
    return customer_id, method_id


class SavedCards:
    """The Stripe calls behind `SavesPaymentMethods`; `remember` and `known`
    keep and find which PaymentIntent pays which pledge (as for one-off gifts)."""

    def __init__(
        self,
        db: Database,
        client: stripe.StripeClient,
        *,
        remember: Callable[[str, str], None],
        known: Callable[[str], str | None],
    ) -> None:
        self._db = db
        self._client = client
        self._remember = remember
        self._known = known

    # --- the donor's Customer -------------------------------------------

    def customer_id(self, donor_id: str) -> str:
        """The donor's Customer, made the first time (once, whatever retries)."""
        with self._db.read() as session:
            found = session.exec(
                select(StripeCustomer.customer_id).where(
                    StripeCustomer.user_id == donor_id
                )
            ).first()
        if found is not None:
            return found
        params: Any = {"metadata": {"user_id": donor_id}}
        options: Any = {"idempotency_key": idempotency_key(donor_id, "customer")}
        try:
            customer = self._client.v1.customers.create(params, options)
        except UNANSWERED as exc:
            raise unavailable(exc) from None
        with self._db.write_session() as session:
            _KEEP_CUSTOMER.run(
                session.connection(),
                {
                    "user_id": donor_id,
                    "customer_id": customer.id,
                    "created_at": utcnow(),
                },
            )
            session.commit()
        return self.customer_id(donor_id)

    def erase_customer(self, customer_id: str) -> None:
        """Delete the Customer at Stripe, and with it the cards saved to it;
        one already gone stays gone (a retry after an answer that was lost)."""
        try:
            self._client.v1.customers.delete(customer_id)
        except stripe.InvalidRequestError as refused:
            if refused.code != "resource_missing":
                raise
        except UNANSWERED as exc:
            raise unavailable(exc) from None

    # --- saving a card --------------------------------------------------

    def setup_url(self, *, donor_id: str, return_url: str) -> str:
        """A Checkout Session in setup mode for the donor's Customer: Stripe's
        page saves the card (asking the bank's confirmation if it wants one),
        then sends the donor to `return_url`. No money moves, so no key: a
        page whose answer was lost is never used and expires."""
        params: Any = {
            "mode": "setup",
            "customer": self.customer_id(donor_id),
            "payment_method_types": ["card"],
            "setup_intent_data": {"metadata": {"user_id": donor_id}},
            "success_url": return_url,
            "cancel_url": return_url.split("?")[0],
        }
        try:
            session = self._client.v1.checkout.sessions.create(params)
        except stripe.InvalidRequestError as refused:
            raise PaymentRefused(refused.user_message or "refused") from None
        except UNANSWERED as exc:
            raise unavailable(exc) from None
        if not session.url:
            raise PaymentRefused("Stripe gave no Checkout page.")
        return session.url

    def _from_checkout(self, donor_id: str, session_id: str) -> str:
        """The card a donor saved on a setup-mode Checkout page of their own
        Customer (another donor's page is not known here)."""
        customer_id = self.customer_id(donor_id)
        try:
            session = self._client.v1.checkout.sessions.retrieve(session_id)
            done = (
                session.mode == "setup"
                and session.status == "complete"
                and session.customer == customer_id
                and isinstance(session.setup_intent, str)
            )
            if not done:
                raise UnknownPaymentMethod(session_id)
            assert isinstance(session.setup_intent, str)
            setup = self._client.v1.setup_intents.retrieve(session.setup_intent)
        except stripe.InvalidRequestError:
            raise UnknownPaymentMethod(session_id) from None
        except UNANSWERED as exc:
            raise unavailable(exc) from None
        method = setup.payment_method
        method_id = method if isinstance(method, str) else getattr(method, "id", None)
        if setup.status != "succeeded" or not method_id:
            raise PaymentRefused("The card was not saved.")
        return token_of(customer_id, method_id)

    def save(self, *, donor_id: str, payment_method: str) -> str:
        """Save the card to the donor's Customer with a SetupIntent (usage
        off_session); its token. A card Stripe refuses raises PaymentRefused.
        A setup-mode Checkout Session's id (`cs_…`) names the card the donor
        saved on that page."""
        if payment_method.startswith("cs_"):
            return self._from_checkout(donor_id, payment_method)
        customer_id = self.customer_id(donor_id)
        params: Any = {
            "customer": customer_id,
            "payment_method": payment_method,
            "payment_method_types": ["card"],
            "usage": "off_session",
            "confirm": True,
            "metadata": {"user_id": donor_id},
        }
        step = f"setup:{payment_method}"
        options: Any = {"idempotency_key": idempotency_key(donor_id, step)}
        try:
            setup = self._client.v1.setup_intents.create(params, options)
        except stripe.CardError as declined:
            raise PaymentRefused(declined.user_message or "declined") from None
        except stripe.InvalidRequestError as refused:
            if refused.param == "payment_method":
                raise UnknownPaymentMethod(payment_method) from None
            raise PaymentRefused(refused.user_message or "refused") from None
        except UNANSWERED as exc:
            raise unavailable(exc) from None
        if setup.status != "succeeded":
            # A card whose bank wants the donor to confirm it: only Stripe's
            # own page or SDK can ask them.
            raise PaymentRefused(
                "This card needs your confirmation; add it from the app."
            )
        method = setup.payment_method
        method_id = method if isinstance(method, str) else getattr(method, "id", None)
        if not method_id:
            raise PaymentRefused("Stripe saved no card.")
        return token_of(customer_id, method_id)

    # --- charging it ----------------------------------------------------

    def charge(
        self,
        *,
        pledge_id: str,
        amount_cents: int,
        currency: str,
        token: str,
        donor_present: bool,
    ) -> ProviderResult:
        """Authorize the pledge with the saved card: with the donor there
        (a plan's first period), `setup_future_usage=off_session`; without,
        `off_session=true`. Manual capture, as every pledge's."""
        customer_id, method_id = parse_token(token)
        known = self._known(pledge_id)
        if known is not None:
            # Asked again after Stripe's answer was lost: its state is the answer.
            try:
                intent = self._client.v1.payment_intents.retrieve(known)
            except UNANSWERED as exc:
                raise unavailable(exc) from None
            return result_of(intent)
        params: Any = {
            "amount": amount_cents,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": method_id,
            "payment_method_types": ["card"],
            "confirm": True,
            "capture_method": "manual",
            "metadata": {"pledge_id": pledge_id},
        }
        if donor_present:
            params["setup_future_usage"] = "off_session"
        else:
            params["off_session"] = True
        return authorize_intent(
            self._client,
            params,
            pledge_id=pledge_id,
            payment_method=token,
            remember=self._remember,
        )

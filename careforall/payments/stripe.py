"""Stripe as the payment provider: PaymentIntents with manual capture.

Each pledge has one PaymentIntent (`metadata.pledge_id` names the pledge),
kept in `stripe_payments`. Every call carries an idempotency key made of the
pledge and the step (`careforall:<pledge>:capture`), so asking again after a
crash, a timeout or a 5xx returns Stripe's first answer and never charges
twice. The library is told not to retry by itself (`max_network_retries=0`):
an unanswered call raises `ProviderUnavailable`, and the outbox (or the
person who asked) asks again later with the same key.

Capture is manual even with CAREFORALL_AUTO_CAPTURE on: the outbox captures
right after the authorization, as with the simulation, so the setting keeps
its meaning (off: an admin captures).
"""

from __future__ import annotations

from typing import Any

import stripe
from sqlmodel import select

from careforall.db import Database, InsertUnlessPresent
from careforall.domain.clock import utcnow
from careforall.domain.states import PledgeStatus
from careforall.models import StripePayment, table_of
from careforall.payment_config import StripeConfig
from careforall.payments.provider import (
    PaymentRefused,
    PaymentState,
    ProviderResult,
    ProviderUnavailable,
    UnknownPaymentMethod,
)
from careforall.payments.stripe_calls import (
    UNANSWERED,
    HttpClient,
    authorize_intent,
    idempotency_key,
    make_client,
    result_of,
    unavailable,
)
from careforall.payments.stripe_cards import SavedCards
from careforall.payments.stripe_events import CANCELED

NOT_AUTHORIZED = "No payment was authorized."
_REMEMBER = InsertUnlessPresent(table_of(StripePayment), "pledge_id")


class StripeProvider:
    def __init__(self, db: Database, config: StripeConfig) -> None:
        self._db = db
        self._http = HttpClient(config.timeout_seconds)
        self.client = make_client(config, self._http)
        self.cards = SavedCards(
            db, self.client, remember=self._remember, known=self.intent_id
        )

    def close(self) -> None:
        """Close the connections to Stripe (at the app's end)."""
        self._http.close()

    # --- which PaymentIntent pays which pledge --------------------------

    def intent_id(self, pledge_id: str) -> str | None:
        with self._db.read() as session:
            return session.exec(
                select(StripePayment.payment_intent_id).where(
                    StripePayment.pledge_id == pledge_id
                )
            ).first()

    def _remember(self, pledge_id: str, intent_id: str) -> None:
        with self._db.write_session() as session:
            _REMEMBER.run(
                session.connection(),
                {
                    "pledge_id": pledge_id,
                    "payment_intent_id": intent_id,
                    "created_at": utcnow(),
                },
            )
            session.commit()

    # --- the provider interface -----------------------------------------

    def authorize(
        self, *, pledge_id: str, amount_cents: int, currency: str, payment_method: str
    ) -> ProviderResult:
        known = self.intent_id(pledge_id)
        if known is not None:
            return self._authorize_known(pledge_id, known, payment_method)
        params: Any = {
            "amount": amount_cents,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "payment_method_types": ["card"],
            "confirm": True,
            "capture_method": "manual",
            "metadata": {"pledge_id": pledge_id},
        }
        return authorize_intent(
            self.client,
            params,
            pledge_id=pledge_id,
            payment_method=payment_method,
            remember=self._remember,
        )

    def _authorize_known(
        self, pledge_id: str, intent_id: str, payment_method: str
    ) -> ProviderResult:
        """The pledge has a PaymentIntent already: one made for a mobile app's
        payment sheet (still open: confirmed now with this payment method),
        or the first try's (asked again after its answer was lost: its state
        is the answer)."""
        intent = self._call(self.client.v1.payment_intents.retrieve, intent_id)
        open_ = intent.status in ("requires_payment_method", "requires_confirmation")
        # The same card again after its decline: its answer stands, untried.
        tried = (
            intent.last_payment_error is not None
            and _method_id(intent.payment_method) == payment_method
        )
        if not open_ or tried:
            return result_of(intent)
        params: Any = {"payment_method": payment_method}
        step = f"confirm:{payment_method}"
        options: Any = {"idempotency_key": idempotency_key(pledge_id, step)}
        try:
            intent = self.client.v1.payment_intents.confirm(intent_id, params, options)
        except stripe.CardError as declined:
            return ProviderResult(approved=False, reason=declined.user_message)
        except stripe.InvalidRequestError as refused:
            if refused.param == "payment_method":
                raise UnknownPaymentMethod(payment_method) from None
            return ProviderResult(approved=False, reason=refused.user_message)
        except UNANSWERED as exc:
            raise unavailable(exc) from None
        return result_of(intent)

    def capture(self, *, pledge_id: str) -> ProviderResult:
        return self._step(pledge_id, "capture", self.client.v1.payment_intents.capture)

    def cancel(self, *, pledge_id: str) -> ProviderResult:
        """Release an authorization that was not captured (the donor is not charged)."""
        return self._step(pledge_id, "cancel", self.client.v1.payment_intents.cancel)

    def refund(
        self,
        *,
        pledge_id: str,
        amount_cents: int | None = None,
        refunded_cents: int = 0,
    ) -> ProviderResult:
        """Refund what is left (`refund`), or part of it: each partial refund
        is keyed by the running sum it reaches (`refund:1500`), so asking
        again repeats none, and the next one is a new refund."""
        intent_id = self.intent_id(pledge_id)
        if intent_id is None:
            return ProviderResult(approved=False, reason=NOT_AUTHORIZED)
        params: Any = {"payment_intent": intent_id}
        step = "refund"
        if amount_cents is not None:
            params["amount"] = amount_cents
            step = f"refund:{refunded_cents + amount_cents}"
        options: Any = {"idempotency_key": idempotency_key(pledge_id, step)}
        try:
            self.client.v1.refunds.create(params, options)
        except stripe.InvalidRequestError as refused:
            if refused.code == "charge_already_refunded":
                return ProviderResult(approved=True)
            return ProviderResult(approved=False, reason=refused.user_message)
        except UNANSWERED as exc:
            raise unavailable(exc) from None
        return ProviderResult(approved=True)

    # --- saved cards (recurring gifts, payments/stripe_cards.py) --------

    def save_payment_method(self, *, donor_id: str, payment_method: str) -> str:
        return self.cards.save(donor_id=donor_id, payment_method=payment_method)

    def card_setup_url(self, *, donor_id: str, return_url: str) -> str:
        return self.cards.setup_url(donor_id=donor_id, return_url=return_url)

    def erase_customer(self, customer_id: str) -> None:
        self.cards.erase_customer(customer_id)

    def charge_saved(
        self,
        *,
        pledge_id: str,
        amount_cents: int,
        currency: str,
        token: str,
        donor_present: bool = False,
    ) -> ProviderResult:
        return self.cards.charge(
            pledge_id=pledge_id,
            amount_cents=amount_cents,
            currency=currency,
            token=token,
            donor_present=donor_present,
        )

    # --- hosted payments (Checkout, mobile payment sheet) ---------------

    def checkout_url(
        self,
        *,
        pledge_id: str,
        amount_cents: int,
        currency: str,
        title: str,
        return_url: str,
    ) -> str:
        """A Checkout Session for the pledge: its PaymentIntent (made when the
        donor pays) has manual capture and `metadata.pledge_id`, as ours."""
        params: Any = {
            "mode": "payment",
            "client_reference_id": pledge_id,
            "metadata": {"pledge_id": pledge_id},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount_cents,
                        "product_data": {"name": title[:250]},
                    },
                }
            ],
            "payment_intent_data": {
                "capture_method": "manual",
                "metadata": {"pledge_id": pledge_id},
            },
            "success_url": return_url,
            "cancel_url": return_url,
        }
        options: Any = {"idempotency_key": idempotency_key(pledge_id, "checkout")}
        try:
            session = self.client.v1.checkout.sessions.create(params, options)
        except stripe.InvalidRequestError as refused:
            raise PaymentRefused(refused.user_message or "refused") from None
        except UNANSWERED as exc:
            raise unavailable(exc) from None
        if not session.url:
            raise ProviderUnavailable("Stripe gave no Checkout page")
        return session.url

    def client_secret(self, *, pledge_id: str, amount_cents: int, currency: str) -> str:
        """The client secret of the pledge's PaymentIntent (made unconfirmed
        the first time), for Stripe's payment sheet in a mobile app."""
        intent_id = self.intent_id(pledge_id)
        if intent_id is not None:
            intent = self._call(self.client.v1.payment_intents.retrieve, intent_id)
        else:
            params: Any = {
                "amount": amount_cents,
                "currency": currency.lower(),
                "payment_method_types": ["card"],
                "capture_method": "manual",
                "metadata": {"pledge_id": pledge_id},
            }
            options: Any = {"idempotency_key": idempotency_key(pledge_id, "intent")}
            try:
                intent = self._call(
                    self.client.v1.payment_intents.create, params, options
                )
            except stripe.InvalidRequestError as refused:
                raise PaymentRefused(refused.user_message or "refused") from None
            self._remember(pledge_id, intent.id)
        if not intent.client_secret:
            raise ProviderUnavailable("Stripe gave no client secret")
        return intent.client_secret

    def payment_state(self, *, pledge_id: str) -> PaymentState | None:
        """Stripe's state of the pledge's PaymentIntent. One whose id was never
        kept (Stripe's answer and its webhooks were all lost) is found by its
        `metadata.pledge_id` with Stripe's search, which lags by up to a
        minute: reconcile only asks about pledges older than that."""
        intent_id = self.intent_id(pledge_id)
        if intent_id is None:
            query: Any = {"query": f"metadata['pledge_id']:'{pledge_id}'"}
            try:
                found = self.client.v1.payment_intents.search(query)
            except UNANSWERED as exc:
                raise unavailable(exc) from None
            if not found.data:
                return None
            intent_id = found.data[0].id
            self._remember(pledge_id, intent_id)
        return _state_of(self._call(self.client.v1.payment_intents.retrieve, intent_id))

    # --- calls ----------------------------------------------------------

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> stripe.PaymentIntent:
        try:
            intent: stripe.PaymentIntent = method(*args, **kwargs)
        except UNANSWERED as exc:
            raise unavailable(exc) from None
        return intent

    def _step(self, pledge_id: str, step: str, method: Any) -> ProviderResult:
        """Capture or cancel the pledge's PaymentIntent, once per pledge."""
        intent_id = self.intent_id(pledge_id)
        if intent_id is None:
            return ProviderResult(approved=False, reason=NOT_AUTHORIZED)
        options: Any = {"idempotency_key": idempotency_key(pledge_id, step)}
        try:
            self._call(method, intent_id, None, options)
        except stripe.InvalidRequestError as refused:
            if refused.code != "payment_intent_unexpected_state":
                return ProviderResult(approved=False, reason=refused.user_message)
            # Already done (from Stripe's dashboard, or a first call whose
            # answer was lost and whose key expired): that is a yes.
            current = self._call(self.client.v1.payment_intents.retrieve, intent_id)
            done = {"capture": "succeeded", "cancel": "canceled"}[step]
            if current.status == done:
                return ProviderResult(approved=True)
            return ProviderResult(approved=False, reason=refused.user_message)
        return ProviderResult(approved=True)


def _state_of(intent: stripe.PaymentIntent) -> PaymentState | None:
    """A PaymentIntent's status as a pledge's; None while the donor may still
    finish (requires_action, processing, or no payment method tried yet)."""
    if intent.status == "requires_capture":
        return PaymentState(PledgeStatus.AUTHORIZED)
    if intent.status == "succeeded":
        return PaymentState(PledgeStatus.CAPTURED)
    if intent.status == "canceled":
        return PaymentState(PledgeStatus.FAILED, CANCELED)
    error = intent.last_payment_error
    if intent.status == "requires_payment_method" and error is not None:
        return PaymentState(PledgeStatus.FAILED, error.message)
    return None


def _method_id(method: object) -> str | None:
    """A PaymentIntent's payment method: its id, or the expanded object's."""
    if isinstance(method, str) or method is None:
        return method
    found = getattr(method, "id", None)
    return found if isinstance(found, str) else None

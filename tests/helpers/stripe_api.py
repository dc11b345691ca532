"""The objects of the Stripe stand-in: PaymentIntents, Charges, Refunds and
Events, shaped like Stripe's answers (API version 2025), and the rules of the
few endpoints the adapter calls.

`StripeBook.handle(method, path, params)` answers one request as Stripe
would, `(status, body)`, and appends the events it caused to `events`; every
change of money is also appended to `effects`, which the tests count
("charged once"). The HTTP side (idempotency, faults, webhooks) is in
`tests/helpers/stripe_standin.py`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.stripe_cards_api import AUTHENTICATION_REQUIRED, SavedCardsBook

Json = dict[str, Any]
Answer = tuple[int, Json]

# Stripe's test payment methods (https://docs.stripe.com/testing): the
# approved ones, and the declined ones with their decline code.
APPROVED = ("pm_card_visa", "pm_card_mastercard", "pm_card_amex")
DECLINED = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_chargeDeclinedExpiredCard": "expired_card",
    # Saved to a Customer without trouble; every charge of it is declined.
    "pm_card_chargeCustomerFail": "generic_decline",
}
MINIMUM_AMOUNT = 50  # Stripe refuses charges below about 0.50 in most currencies


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def error(status: int, kind: str, message: str, **more: Any) -> Answer:
    """Stripe's error body: the library raises CardError (402),
    InvalidRequestError (400/404), IdempotencyError, APIError (500)..."""
    return status, {"error": {"type": kind, "message": message, **more}}


@dataclass
class Effect:
    """A change of money the stand-in made: what, on which PaymentIntent, how much."""

    kind: str  # authorize, decline, capture, cancel, refund, setup (a card saved)
    payment_intent: str
    amount: int


@dataclass
class StripeBook(SavedCardsBook):
    payment_intents: dict[str, Json] = field(default_factory=dict)
    customers: dict[str, Json] = field(default_factory=dict)
    payment_methods: dict[str, Json] = field(default_factory=dict)
    setup_intents: dict[str, Json] = field(default_factory=dict)
    charges: dict[str, Json] = field(default_factory=dict)
    refunds: dict[str, Json] = field(default_factory=dict)
    disputes: dict[str, Json] = field(default_factory=dict)
    checkouts: dict[str, Json] = field(default_factory=dict)
    base_url: str = ""  # where the stand-in serves its Checkout pages
    effects: list[Effect] = field(default_factory=list)
    events: list[Json] = field(default_factory=list)

    def handle(self, method: str, path: str, params: dict[str, str]) -> Answer:
        parts = path.strip("/").split("/")
        routes: dict[tuple[str, ...], Callable[..., Answer]] = {
            ("POST", "v1", "payment_intents"): self._create,
            ("GET", "v1", "payment_intents", "search"): self._search,
            ("GET", "v1", "payment_intents", "*"): self._retrieve,
            ("POST", "v1", "payment_intents", "*", "capture"): self._capture,
            ("POST", "v1", "payment_intents", "*", "cancel"): self._cancel,
            ("POST", "v1", "payment_intents", "*", "confirm"): self._confirm_open,
            ("POST", "v1", "refunds"): self._refund,
            ("POST", "v1", "checkout", "sessions"): self._checkout,
            ("POST", "v1", "customers"): self.create_customer,
            ("DELETE", "v1", "customers", "*"): self.delete_customer,
            ("POST", "v1", "setup_intents"): self.create_setup_intent,
            ("GET", "v1", "setup_intents", "*"): self.retrieve_setup_intent,
            ("GET", "v1", "checkout", "sessions", "*"): self.retrieve_checkout,
        }
        for route, handler in routes.items():
            if route[0] != method or len(route) != len(parts) + 1:
                continue
            ids = [p for r, p in zip(route[1:], parts, strict=True) if r == "*"]
            if all(r in ("*", p) for r, p in zip(route[1:], parts, strict=True)):
                return handler(params, *ids)
        return error(404, "invalid_request_error", f"Unrecognized request URL ({path})")

    def _known_card(self, card: str) -> bool:
        return card in APPROVED or card in DECLINED or card in AUTHENTICATION_REQUIRED

    def _new_id(self, prefix: str) -> str:
        return new_id(prefix)

    def _effect(self, kind: str, target: str, amount: int) -> None:
        self.effects.append(Effect(kind, target, amount))

    # --- events ---------------------------------------------------------

    def _event(self, kind: str, obj: Json) -> None:
        self.events.append(
            {
                "id": new_id("evt"),
                "object": "event",
                "api_version": "2025-01-27.acacia",
                "created": int(time.time()),
                "livemode": False,
                "pending_webhooks": 1,
                "type": kind,
                "data": {"object": dict(obj)},
            }
        )

    # --- PaymentIntents -------------------------------------------------

    def _intent(self, intent_id: str) -> Json | None:
        return self.payment_intents.get(intent_id)

    def _missing(self, intent_id: str) -> Answer:
        return error(
            404,
            "invalid_request_error",
            f"No such payment_intent: '{intent_id}'",
            code="resource_missing",
            param="intent",
        )

    def _create(self, params: dict[str, str]) -> Answer:
        amount, currency = params.get("amount", ""), params.get("currency", "")
        if not amount.isdigit():
            return error(400, "invalid_request_error", "Missing amount", param="amount")
        if int(amount) < MINIMUM_AMOUNT:
            return error(
                400,
                "invalid_request_error",
                "Amount must be at least 50 cents",
                code="amount_too_small",
                param="amount",
            )
        if len(currency) != 3 or currency != currency.lower():
            return error(
                400, "invalid_request_error", "Invalid currency", param="currency"
            )
        method = params.get("payment_method")
        if method is not None and not self._known_card(self.card_of(method)):
            return self.no_such_method(method)
        if method is not None:
            refused = self.check_owner(method, params.get("customer"))
            if refused is not None:
                return refused
        intent: Json = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": int(amount),
            "amount_capturable": 0,
            "amount_received": 0,
            "currency": currency,
            "capture_method": params.get("capture_method", "automatic_async"),
            "status": "requires_payment_method",
            "payment_method": method,
            "customer": params.get("customer"),
            "setup_future_usage": params.get("setup_future_usage"),
            "off_session": params.get("off_session") == "true",
            "latest_charge": None,
            "last_payment_error": None,
            "livemode": False,
            "created": int(time.time()),
            "metadata": {
                key[len("metadata[") : -1]: value
                for key, value in params.items()
                if key.startswith("metadata[")
            },
        }
        intent["client_secret"] = f"{intent['id']}_secret_{os.urandom(8).hex()}"
        self.payment_intents[intent["id"]] = intent
        self._event("payment_intent.created", intent)
        if params.get("confirm") == "true" and method is not None:
            return self._confirm(intent, method)
        return 200, intent

    def _confirm(self, intent: Json, method: str) -> Answer:
        charge = {
            "id": new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": 0,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "captured": False,
            "refunded": False,
            "metadata": dict(intent["metadata"]),
        }
        self.charges[charge["id"]] = charge
        intent["latest_charge"] = charge["id"]
        refused = self.off_session_refusal(intent, method)
        if refused is not None:
            return refused
        card = self.card_of(method)
        if card in DECLINED:
            code = DECLINED[card]
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": code,
                "message": "Your card was declined.",
            }
            self.effects.append(Effect("decline", intent["id"], intent["amount"]))
            self._event("payment_intent.payment_failed", intent)
            return error(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                decline_code=code,
                charge=charge["id"],
                payment_intent=dict(intent),
            )
        intent["amount_capturable"] = intent["amount"]
        intent["status"] = (
            "requires_capture" if intent["capture_method"] == "manual" else "succeeded"
        )
        self.effects.append(Effect("authorize", intent["id"], intent["amount"]))
        self._event("payment_intent.amount_capturable_updated", intent)
        return 200, intent

    def _search(self, params: dict[str, str]) -> Answer:
        """Only the query the adapter makes: metadata['pledge_id']:'<id>'."""
        match = re.fullmatch(r"metadata\['(\w+)'\]:'([^']*)'", params.get("query", ""))
        if match is None:
            return error(400, "invalid_request_error", "Unsupported search query")
        key, value = match.groups()
        found = [
            pi
            for pi in self.payment_intents.values()
            if pi["metadata"].get(key) == value
        ]
        return 200, {
            "object": "search_result",
            "url": "/v1/payment_intents/search",
            "has_more": False,
            "data": found,
        }

    def _confirm_open(self, params: dict[str, str], intent_id: str) -> Answer:
        """Confirm a PaymentIntent made without a payment method (a mobile
        app's payment sheet), or one whose card was declined, with a card."""
        intent = self._intent(intent_id)
        if intent is None:
            return self._missing(intent_id)
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            return self._unexpected(intent, "confirmed")
        method = params.get("payment_method", "")
        if not self._known_card(self.card_of(method)):
            return self.no_such_method(method)
        intent["payment_method"] = method
        return self._confirm(intent, method)

    def _retrieve(self, params: dict[str, str], intent_id: str) -> Answer:
        intent = self._intent(intent_id)
        return (200, intent) if intent is not None else self._missing(intent_id)

    def _unexpected(self, intent: Json, action: str) -> Answer:
        return error(
            400,
            "invalid_request_error",
            f"This PaymentIntent could not be {action} because it has a status of "
            f"{intent['status']}.",
            code="payment_intent_unexpected_state",
            payment_intent=dict(intent),
        )

    def _capture(self, params: dict[str, str], intent_id: str) -> Answer:
        intent = self._intent(intent_id)
        if intent is None:
            return self._missing(intent_id)
        if intent["status"] != "requires_capture":
            return self._unexpected(intent, "captured")
        amount = intent["amount_capturable"]
        intent.update(status="succeeded", amount_capturable=0, amount_received=amount)
        self.charges[intent["latest_charge"]]["captured"] = True
        self.effects.append(Effect("capture", intent_id, amount))
        self._event("payment_intent.succeeded", intent)
        return 200, intent

    def _cancel(self, params: dict[str, str], intent_id: str) -> Answer:
        intent = self._intent(intent_id)
        if intent is None:
            return self._missing(intent_id)
        if intent["status"] in ("succeeded", "canceled"):
            return self._unexpected(intent, "canceled")
        intent.update(status="canceled", amount_capturable=0)
        intent["cancellation_reason"] = params.get("cancellation_reason")
        self.effects.append(Effect("cancel", intent_id, intent["amount"]))
        self._event("payment_intent.canceled", intent)
        return 200, intent

    # --- Refunds --------------------------------------------------------

    def _refund(self, params: dict[str, str]) -> Answer:
        intent_id = params.get("payment_intent", "")
        intent = self._intent(intent_id)
        if intent is None:
            return self._missing(intent_id)
        if intent["status"] != "succeeded":
            return error(
                400,
                "invalid_request_error",
                "This PaymentIntent does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        charge = self.charges[intent["latest_charge"]]
        left = charge["amount"] - charge["amount_refunded"]
        raw = params.get("amount")
        amount = int(raw) if raw is not None and raw.isdigit() else left
        if left == 0:
            return error(
                400,
                "invalid_request_error",
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        if not 0 < amount <= left:
            return error(
                400,
                "invalid_request_error",
                "Refund amount is greater than unrefunded amount on charge",
                param="amount",
            )
        refund = {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": intent_id,
            "status": "succeeded",
            "metadata": {},
        }
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.effects.append(Effect("refund", intent_id, amount))
        self._event("charge.refunded", charge)
        return 200, refund

    # --- Disputes (opened by the card's bank, not through the API) ------

    def dispute(self, intent_id: str, amount: int | None = None) -> Json:
        """The donor's bank disputes the payment: charge.dispute.created."""
        intent = self.payment_intents[intent_id]
        charge = self.charges[intent["latest_charge"]]
        dispute = {
            "id": new_id("du"),
            "object": "dispute",
            "amount": charge["amount"] if amount is None else amount,
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": intent_id,
            "reason": "fraudulent",
            "status": "needs_response",
            "metadata": {},
        }
        self.disputes[dispute["id"]] = dispute
        self._event("charge.dispute.created", dispute)
        return dispute

    def close_dispute(self, dispute_id: str, status: str) -> Json:
        """The bank decides (won or lost): charge.dispute.closed."""
        dispute = self.disputes[dispute_id]
        dispute["status"] = status
        if status == "lost":
            self.effects.append(
                Effect("dispute_lost", dispute["payment_intent"], dispute["amount"])
            )
        self._event("charge.dispute.closed", dispute)
        return dispute

    # --- Checkout -------------------------------------------------------

    def _checkout(self, params: dict[str, str]) -> Answer:
        if params.get("mode") == "setup":
            return self.create_setup_checkout(params)
        item = "line_items[0][price_data]"
        amount = params.get(f"{item}[unit_amount]", "")
        if not amount.isdigit() or params.get("mode") != "payment":
            return error(400, "invalid_request_error", "Invalid line_items")
        session_id = new_id("cs_test")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": int(amount),
            "currency": params.get(f"{item}[currency]"),
            "client_reference_id": params.get("client_reference_id"),
            "metadata": {
                key[len("metadata[") : -1]: value
                for key, value in params.items()
                if key.startswith("metadata[")
            },
            "payment_intent": None,
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.base_url}/pay/{session_id}",
            "name": params.get(f"{item}[product_data][name]"),
        }
        prefix = "payment_intent_data["
        session["intent_params"] = {
            key[len(prefix) :].replace("]", "", 1): value
            for key, value in params.items()
            if key.startswith(prefix)
        }
        self.checkouts[session_id] = session
        return 200, {k: v for k, v in session.items() if k != "intent_params"}

    def complete_checkout(self, session_id: str, method: str) -> str:
        """The donor paid on the Checkout page: the PaymentIntent is made and
        confirmed; returns where the donor goes next."""
        session = self.checkouts[session_id]
        if session["mode"] == "setup":
            return self.complete_setup_checkout(session, method)
        params = {
            **session["intent_params"],
            "amount": str(session["amount_total"]),
            "currency": session["currency"],
            "payment_method": method,
            "confirm": "true",
        }
        status, intent = self._create(params)
        if status == 200:
            session.update(status="complete", payment_status="unpaid")
            session["payment_intent"] = intent["id"]
            self._event("checkout.session.completed", session)
            return str(session["success_url"])
        return str(session["cancel_url"])

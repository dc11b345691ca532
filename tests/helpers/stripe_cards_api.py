"""The stand-in's saved cards: Customers, SetupIntents and the PaymentMethods
saved to a Customer, and the rules of charging them off-session.

A test card saved with a SetupIntent (`pm_card_visa`, ...) becomes a
PaymentMethod of its own (`pm_<random>`) attached to the Customer, as in
Stripe's test mode; a charge with it must name that Customer.
`pm_card_authenticationRequired` stands for a card whose bank wants the
donor to confirm every payment: while the donor is there (saving it, or a
first charge with `setup_future_usage`) the stand-in takes it as confirmed,
as if they had passed the bank's check on Stripe's page; off-session
(`off_session=true`) it is refused with `authentication_required`, as Stripe
does.
"""

from __future__ import annotations

import time
from typing import Any

Json = dict[str, Any]
Answer = tuple[int, Json]

AUTHENTICATION_REQUIRED = ("pm_card_authenticationRequired",)


def _error(status: int, kind: str, message: str, **more: Any) -> Answer:
    return status, {"error": {"type": kind, "message": message, **more}}


def _metadata(params: dict[str, str]) -> dict[str, str]:
    return {
        key[len("metadata[") : -1]: value
        for key, value in params.items()
        if key.startswith("metadata[")
    }


class SavedCardsBook:
    """Mixed into `StripeBook`, which holds these dicts and lists."""

    customers: dict[str, Json]
    payment_methods: dict[str, Json]
    setup_intents: dict[str, Json]
    checkouts: dict[str, Json]
    base_url: str

    def _known_card(self, card: str) -> bool:
        raise NotImplementedError  # StripeBook's

    def _new_id(self, prefix: str) -> str:
        raise NotImplementedError  # StripeBook's

    def _event(self, kind: str, obj: Json) -> None:
        raise NotImplementedError  # StripeBook's

    def _effect(self, kind: str, target: str, amount: int) -> None:
        raise NotImplementedError  # StripeBook's

    def card_of(self, method: str) -> str:
        """The test card a payment method stands for (itself, or the one a
        saved PaymentMethod was made from)."""
        saved = self.payment_methods.get(method)
        return str(saved["card"]) if saved is not None else method

    def no_such_method(self, method: str) -> Answer:
        return _error(
            400,
            "invalid_request_error",
            f"No such PaymentMethod: '{method}'",
            code="resource_missing",
            param="payment_method",
        )

    def check_owner(self, method: str, customer: str | None) -> Answer | None:
        """A saved PaymentMethod is charged with its Customer named, only."""
        saved = self.payment_methods.get(method)
        if saved is None or saved["customer"] == customer:
            return None
        return _error(
            400,
            "invalid_request_error",
            "The provided PaymentMethod is attached to another Customer, or "
            "was attached to a Customer: pass that Customer's id.",
            param="customer",
        )

    # --- POST /v1/customers ---------------------------------------------

    def create_customer(self, params: dict[str, str]) -> Answer:
        customer: Json = {
            "id": self._new_id("cus"),
            "object": "customer",
            "created": int(time.time()),
            "livemode": False,
            "metadata": _metadata(params),
        }
        self.customers[customer["id"]] = customer
        return 200, customer

    # --- DELETE /v1/customers/{id} ---------------------------------------

    def delete_customer(self, _params: dict[str, str], customer_id: str) -> Answer:
        """Gone for good, with the cards saved to it (Stripe detaches them):
        a second delete, or a charge with one of its cards, is refused."""
        if self.customers.pop(customer_id, None) is None:
            return _error(
                404,
                "invalid_request_error",
                f"No such customer: '{customer_id}'",
                code="resource_missing",
            )
        for method in self.payment_methods.values():
            if method.get("customer") == customer_id:
                method["customer"] = None
        return 200, {"id": customer_id, "object": "customer", "deleted": True}

    # --- POST /v1/setup_intents -----------------------------------------

    def create_setup_intent(self, params: dict[str, str]) -> Answer:
        """Save a card to a Customer (confirmed at once, `usage=off_session`)."""
        customer = params.get("customer", "")
        if customer not in self.customers:
            return _error(
                404,
                "invalid_request_error",
                f"No such customer: '{customer}'",
                code="resource_missing",
                param="customer",
            )
        method = params.get("payment_method", "")
        card = self.card_of(method)
        if not self._known_card(card):
            return self.no_such_method(method)
        refused = self.check_owner(method, customer)
        if refused is not None:
            return refused
        setup: Json = {
            "id": self._new_id("seti"),
            "object": "setup_intent",
            "customer": customer,
            "usage": params.get("usage", "off_session"),
            "status": "requires_confirmation",
            "payment_method": None,
            "last_setup_error": None,
            "metadata": _metadata(params),
        }
        setup["client_secret"] = f"{setup['id']}_secret_{self._new_id('s')}"
        self.setup_intents[setup["id"]] = setup
        if params.get("confirm") != "true":
            return 200, setup
        if card.startswith("pm_card_chargeDeclined"):
            setup["status"] = "requires_payment_method"
            setup["last_setup_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "message": "Your card was declined.",
            }
            return _error(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                setup_intent=dict(setup),
            )
        saved = self.payment_methods.get(method)
        if saved is None:
            saved = {
                "id": self._new_id("pm"),
                "object": "payment_method",
                "type": "card",
                "card": card,
                "customer": customer,
            }
            self.payment_methods[saved["id"]] = saved
        setup.update(status="succeeded", payment_method=saved["id"])
        self._effect("setup", setup["id"], 0)
        self._event("setup_intent.succeeded", setup)
        return 200, setup

    def retrieve_setup_intent(self, params: dict[str, str], setup_id: str) -> Answer:
        setup = self.setup_intents.get(setup_id)
        if setup is None:
            return _error(
                404,
                "invalid_request_error",
                f"No such setupintent: '{setup_id}'",
                code="resource_missing",
            )
        return 200, setup

    # --- Checkout in setup mode (a card saved on Stripe's page) ---------

    def create_setup_checkout(self, params: dict[str, str]) -> Answer:
        customer = params.get("customer", "")
        if customer not in self.customers:
            return _error(
                400,
                "invalid_request_error",
                f"No such customer: '{customer}'",
                param="customer",
            )
        session_id = self._new_id("cs_test")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "setup",
            "status": "open",
            "customer": customer,
            "setup_intent": None,
            "amount_total": None,
            "currency": None,
            "metadata": _metadata(params),
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.base_url}/pay/{session_id}",
            "name": "Save a card",
        }
        self.checkouts[session_id] = session
        return 200, session

    def retrieve_checkout(self, params: dict[str, str], session_id: str) -> Answer:
        session = self.checkouts.get(session_id)
        if session is None:
            return _error(
                404,
                "invalid_request_error",
                f"No such checkout.session: '{session_id}'",
                code="resource_missing",
            )
        return 200, {k: v for k, v in session.items() if k != "intent_params"}

    def complete_setup_checkout(self, session: Json, method: str) -> str:
        """The donor saved the card on the page (passing their bank's check
        if it asked): where they go next, with the session's id."""
        status, setup = self.create_setup_intent(
            {
                "customer": session["customer"],
                "payment_method": method,
                "usage": "off_session",
                "confirm": "true",
            }
        )
        if status != 200:
            return str(session["cancel_url"])
        session.update(status="complete", setup_intent=setup["id"])
        self._event("checkout.session.completed", session)
        back = str(session["success_url"])
        return back.replace("{CHECKOUT_SESSION_ID}", session["id"])

    def off_session_refusal(self, intent: Json, method: str) -> Answer | None:
        """An off-session charge of a card whose bank wants the donor there:
        refused with `authentication_required`, the PaymentIntent left
        requiring a payment method."""
        if not intent.get("off_session") or self.card_of(method) not in (
            AUTHENTICATION_REQUIRED
        ):
            return None
        message = "Your card was declined. This transaction requires authentication."
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": "authentication_required",
            "decline_code": "authentication_required",
            "message": message,
        }
        self._effect("decline", intent["id"], intent["amount"])
        self._event("payment_intent.payment_failed", intent)
        return _error(
            402,
            "card_error",
            message,
            code="authentication_required",
            decline_code="authentication_required",
            payment_intent=dict(intent),
        )

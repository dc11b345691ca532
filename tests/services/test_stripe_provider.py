"""The Stripe adapter against the local stand-in of Stripe's API, through the
official library: PaymentIntents with manual capture, capture, refund and
cancel, each once per pledge whatever happens to the answers."""

from __future__ import annotations

import uuid

import pytest
import stripe
from prometheus_client import REGISTRY

from careforall.payments.provider import (
    ProviderResult,
    ProviderUnavailable,
    UnknownPaymentMethod,
)
from careforall.payments.stripe import StripeProvider
from tests.helpers.stripe_standin import StripeStandIn

APPROVED = ProviderResult(approved=True)


def new_pledge() -> str:
    return f"plg_{uuid.uuid4().hex[:20]}"


def authorized(provider: StripeProvider, amount: int = 2500) -> str:
    pledge_id = new_pledge()
    result = provider.authorize(
        pledge_id=pledge_id,
        amount_cents=amount,
        currency="USD",
        payment_method="pm_card_visa",
    )
    assert result == APPROVED
    return pledge_id


def captured(provider: StripeProvider, amount: int = 2500) -> str:
    pledge_id = authorized(provider, amount)
    assert provider.capture(pledge_id=pledge_id) == APPROVED
    return pledge_id


def test_an_authorization_is_a_payment_intent_with_manual_capture(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn
) -> None:
    pledge_id = authorized(stripe_provider, 2500)
    intent = stripe_standin.intent_for(pledge_id)
    assert intent["status"] == "requires_capture"
    assert intent["capture_method"] == "manual"
    assert (intent["amount"], intent["currency"]) == (2500, "usd")
    assert intent["metadata"] == {"pledge_id": pledge_id}
    assert stripe_provider.intent_id(pledge_id) == intent["id"]
    [call] = stripe_standin.calls("create")
    assert call.idempotency_key == f"careforall:{pledge_id}:authorize"
    assert [e.kind for e in stripe_standin.effects()] == ["authorize"]


def test_a_declined_card_is_a_refusal_with_stripes_reason(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn
) -> None:
    pledge_id = new_pledge()
    result = stripe_provider.authorize(
        pledge_id=pledge_id,
        amount_cents=2500,
        currency="EUR",
        payment_method="pm_card_chargeDeclined",
    )
    assert result == ProviderResult(approved=False, reason="Your card was declined.")
    assert stripe_standin.intent_for(pledge_id)["status"] == "requires_payment_method"
    # Asked again: the same PaymentIntent's answer, no second attempt at the card.
    again = stripe_provider.authorize(
        pledge_id=pledge_id,
        amount_cents=2500,
        currency="EUR",
        payment_method="pm_card_chargeDeclined",
    )
    assert not again.approved
    assert [e.kind for e in stripe_standin.effects()] == ["decline"]


def test_an_unknown_payment_method_charges_nothing(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn
) -> None:
    with pytest.raises(UnknownPaymentMethod):
        stripe_provider.authorize(
            pledge_id=new_pledge(),
            amount_cents=2500,
            currency="USD",
            payment_method="pm_card_ok",
        )
    assert stripe_standin.effects() == []


def test_authorizing_twice_uses_the_first_payment_intent(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn
) -> None:
    pledge_id = authorized(stripe_provider)
    again = stripe_provider.authorize(
        pledge_id=pledge_id,
        amount_cents=2500,
        currency="USD",
        payment_method="pm_card_visa",
    )
    assert again == APPROVED
    assert len(stripe_standin.effects("authorize")) == 1


def test_capture_and_refund_each_happen_once_with_their_own_key(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn
) -> None:
    pledge_id = captured(stripe_provider, 4000)
    assert stripe_provider.capture(pledge_id=pledge_id) == APPROVED
    assert stripe_provider.refund(pledge_id=pledge_id) == APPROVED
    assert stripe_provider.refund(pledge_id=pledge_id) == APPROVED
    assert [(e.kind, e.amount) for e in stripe_standin.effects()] == [
        ("authorize", 4000),
        ("capture", 4000),
        ("refund", 4000),
    ]
    keys = {c.idempotency_key for c in stripe_standin.calls("capture")}
    assert keys == {f"careforall:{pledge_id}:capture"}
    keys = {c.idempotency_key for c in stripe_standin.calls("refund")}
    assert keys == {f"careforall:{pledge_id}:refund"}


@pytest.mark.parametrize("fault", ["timeout", "500"])
def test_an_unanswered_capture_is_unavailable_then_retried_and_charged_once(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn, fault: str
) -> None:
    pledge_id = authorized(stripe_provider)
    stripe_standin.fail_next("capture", fault)
    with pytest.raises(ProviderUnavailable):
        stripe_provider.capture(pledge_id=pledge_id)
    # The library did not try again by itself: one request so far.
    assert len(stripe_standin.calls("capture")) == 1
    assert stripe_provider.capture(pledge_id=pledge_id) == APPROVED
    first, second = stripe_standin.calls("capture")
    assert first.idempotency_key == second.idempotency_key
    # A timed-out call had taken effect: the retry got the stored answer.
    assert second.replayed == (fault == "timeout")
    assert len(stripe_standin.effects("capture")) == 1
    assert stripe_standin.intent_for(pledge_id)["status"] == "succeeded"


@pytest.mark.parametrize("fault", ["timeout", "500"])
def test_an_unanswered_refund_is_unavailable_then_retried_and_refunded_once(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn, fault: str
) -> None:
    pledge_id = captured(stripe_provider)
    stripe_standin.fail_next("refund", fault)
    with pytest.raises(ProviderUnavailable):
        stripe_provider.refund(pledge_id=pledge_id)
    assert stripe_provider.refund(pledge_id=pledge_id) == APPROVED
    assert [e.amount for e in stripe_standin.effects("refund")] == [2500]


def test_an_uncaptured_authorization_can_be_canceled_and_then_not_captured(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn
) -> None:
    pledge_id = authorized(stripe_provider)
    assert stripe_provider.cancel(pledge_id=pledge_id) == APPROVED
    assert stripe_provider.cancel(pledge_id=pledge_id) == APPROVED
    refused = stripe_provider.capture(pledge_id=pledge_id)
    assert not refused.approved and "canceled" in (refused.reason or "")
    assert [e.kind for e in stripe_standin.effects()] == ["authorize", "cancel"]


def test_steps_without_an_authorization_are_refused_without_a_call(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn
) -> None:
    pledge_id = new_pledge()
    assert not stripe_provider.capture(pledge_id=pledge_id).approved
    assert not stripe_provider.refund(pledge_id=pledge_id).approved
    assert stripe_standin.requests == []


def test_a_key_reused_with_other_parameters_is_refused_by_the_standin(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn
) -> None:
    client = stripe_provider.client
    options: stripe.RequestOptions = {"idempotency_key": "careforall:x:authorize"}
    client.v1.payment_intents.create({"amount": 100, "currency": "usd"}, options)
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create({"amount": 200, "currency": "usd"}, options)
    assert len(stripe_standin.book.payment_intents) == 1


def test_the_librarys_global_settings_stay_untouched(
    stripe_provider: StripeProvider,
) -> None:
    authorized(stripe_provider)
    assert stripe.api_key is None
    assert stripe.api_base == "https://api.stripe.com"


def test_every_call_to_stripe_is_counted_by_call_and_outcome(
    stripe_provider: StripeProvider, stripe_standin: StripeStandIn
) -> None:
    def count(call: str, outcome: str) -> float:
        value = REGISTRY.get_sample_value(
            "careforall_provider_calls_total", {"call": call, "outcome": outcome}
        )
        return value or 0.0

    before = {
        key: count(*key)
        for key in (
            ("create_payment_intent", "ok"),
            ("capture", "error"),
            ("capture", "unanswered"),
            ("capture", "ok"),
        )
    }
    pledge_id = authorized(stripe_provider)
    stripe_standin.fail_next("capture", "500")
    with pytest.raises(ProviderUnavailable):
        stripe_provider.capture(pledge_id=pledge_id)
    stripe_standin.fail_next("capture", "timeout")
    with pytest.raises(ProviderUnavailable):
        stripe_provider.capture(pledge_id=pledge_id)
    stripe_provider.capture(pledge_id=pledge_id)
    after = {key: count(*key) - was for key, was in before.items()}
    assert after == {
        ("create_payment_intent", "ok"): 1,
        ("capture", "error"): 1,
        ("capture", "unanswered"): 1,
        ("capture", "ok"): 1,
    }

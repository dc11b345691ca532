"""Paying on Stripe's side: Mutation.startCheckout sends the donor to the
Checkout page (the stand-in's) and back to the campaign; startPaymentSheet
gives a mobile app the PaymentIntent's client secret. Either way the
webhooks move the pledge."""

from __future__ import annotations

from typing import Any

import httpx

from careforall.db import Database
from careforall.models import Pledge
from tests import factories as f
from tests.endpoints.test_stripe_webhooks import events_of, post
from tests.helpers.api import GQL
from tests.helpers.stripe_standin import PUBLIC_URL, StripeStandIn

CHECKOUT = "mutation($id: ID!) { startCheckout(pledgeId: $id) { url } }"
SHEET = "mutation($id: ID!) { startPaymentSheet(pledgeId: $id) { clientSecret } }"


def pending(gql: GQL) -> tuple[dict[str, Any], str]:
    donor = f.register(gql)
    campaign = f.campaign(gql, f.admin(gql).token)
    return f.pledge(gql, donor.token, campaign["id"], 4500), donor.token


def status(db: Database, pledge_id: str) -> str:
    with db.read() as session:
        row = session.get(Pledge, pledge_id)
        assert row is not None
        return row.status


def test_checkout_takes_the_payment_and_brings_the_donor_back(
    hosted_gql: GQL, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, donor = pending(hosted_gql)
    url = hosted_gql.ok(CHECKOUT, {"id": pledge["id"]}, donor)["startCheckout"]["url"]
    assert url.startswith(f"{stripe_standin.url}/pay/cs_test_")
    # Asked twice (a double click): the same page.
    assert (
        hosted_gql.ok(CHECKOUT, {"id": pledge["id"]}, donor)["startCheckout"]["url"]
        == url
    )
    [session] = stripe_standin.book.checkouts.values()
    assert session["amount_total"] == 4500 and session["currency"] == "usd"
    assert session["client_reference_id"] == pledge["id"]
    with httpx.Client() as browser:
        assert "Pay 45.00 USD" in browser.get(url).text
        paid = browser.post(url, data={"method": "pm_card_visa"})
    assert paid.status_code == 303
    campaign_id = pledge["campaign"]["id"]
    assert paid.headers["location"] == f"{PUBLIC_URL}/#/campaigns/{campaign_id}"
    intent = stripe_standin.intent_for(pledge["id"])
    assert (intent["capture_method"], intent["status"]) == (
        "manual",
        "requires_capture",
    )
    [authorized] = events_of(stripe_standin, "payment_intent.amount_capturable_updated")
    assert post(hosted_gql.client, authorized).status_code == 200
    assert status(db, pledge["id"]) == "AUTHORIZED"


def test_the_payment_sheet_secret_is_the_same_payment_intent_each_time(
    hosted_gql: GQL, stripe_standin: StripeStandIn
) -> None:
    pledge, donor = pending(hosted_gql)
    first = hosted_gql.ok(SHEET, {"id": pledge["id"]}, donor)["startPaymentSheet"]
    again = hosted_gql.ok(SHEET, {"id": pledge["id"]}, donor)["startPaymentSheet"]
    assert first == again
    intent = stripe_standin.intent_for(pledge["id"])
    assert first["clientSecret"] == intent["client_secret"]
    assert intent["status"] == "requires_payment_method"
    assert stripe_standin.effects() == []


def test_only_the_donor_may_start_paying(hosted_gql: GQL) -> None:
    pledge, _ = pending(hosted_gql)
    stranger = f.register(hosted_gql)
    assert (
        hosted_gql.code(CHECKOUT, {"id": pledge["id"]}, stranger.token) == "NOT_FOUND"
    )
    assert hosted_gql.code(SHEET, {"id": pledge["id"]}, None) == "UNAUTHENTICATED"


def test_stripe_unavailable_is_rate_limited(
    hosted_gql: GQL, stripe_standin: StripeStandIn
) -> None:
    pledge, donor = pending(hosted_gql)
    stripe_standin.fail_next("checkout", "500")
    assert hosted_gql.code(CHECKOUT, {"id": pledge["id"]}, donor) == "RATE_LIMITED"
    assert hosted_gql.ok(CHECKOUT, {"id": pledge["id"]}, donor)["startCheckout"]["url"]


def test_the_simulated_provider_takes_no_hosted_payments(gql: GQL) -> None:
    pledge, donor = pending(gql)
    assert gql.code(CHECKOUT, {"id": pledge["id"]}, donor) == "BAD_USER_INPUT"
    assert gql.code(SHEET, {"id": pledge["id"]}, donor) == "BAD_USER_INPUT"


AUTHORIZE = (
    "mutation($id: ID!, $pm: String!) { authorizePayment(pledgeId: $id, "
    "paymentMethod: $pm) { status failureReason } }"
)


def test_a_payment_sheets_intent_is_confirmed_by_authorize_payment(
    hosted_gql: GQL, stripe_standin: StripeStandIn
) -> None:
    pledge, donor = pending(hosted_gql)
    hosted_gql.ok(SHEET, {"id": pledge["id"]}, donor)
    paid = hosted_gql.ok(AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_visa"}, donor)
    assert paid["authorizePayment"] == {"status": "AUTHORIZED", "failureReason": None}
    # One PaymentIntent for the pledge, confirmed once.
    intent = stripe_standin.intent_for(pledge["id"])
    assert intent["status"] == "requires_capture"
    [confirm] = stripe_standin.calls("confirm")
    assert confirm.idempotency_key == f"careforall:{pledge['id']}:confirm:pm_card_visa"
    assert [e.kind for e in stripe_standin.effects()] == ["authorize"]


def test_a_declined_card_on_a_payment_sheets_intent_fails_the_pledge(
    hosted_gql: GQL, stripe_standin: StripeStandIn
) -> None:
    pledge, donor = pending(hosted_gql)
    hosted_gql.ok(SHEET, {"id": pledge["id"]}, donor)
    variables = {"id": pledge["id"], "pm": "pm_card_chargeDeclined"}
    paid = hosted_gql.ok(AUTHORIZE, variables, donor)["authorizePayment"]
    assert paid == {"status": "FAILED", "failureReason": "Your card was declined."}


def test_paying_on_checkout_after_starting_a_payment_sheet_captures_checkouts(
    hosted_gql: GQL, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, donor = pending(hosted_gql)
    hosted_gql.ok(SHEET, {"id": pledge["id"]}, donor)
    url = hosted_gql.ok(CHECKOUT, {"id": pledge["id"]}, donor)["startCheckout"]["url"]
    with httpx.Client() as browser:
        browser.post(url, data={"method": "pm_card_visa"})
    [authorized] = events_of(stripe_standin, "payment_intent.amount_capturable_updated")
    assert post(hosted_gql.client, authorized).status_code == 200
    assert status(db, pledge["id"]) == "AUTHORIZED"
    admin = f.admin(hosted_gql).token
    captured = hosted_gql.ok(f.CAPTURE, {"id": pledge["id"]}, admin)["capturePayment"]
    assert captured["status"] == "CAPTURED"
    paid = authorized["data"]["object"]["id"]
    assert stripe_standin.book.payment_intents[paid]["status"] == "succeeded"

"""Saving a card for a recurring gift on Stripe's own page: startCardSetup
sends the donor to Checkout in setup mode (the stand-in's) and back with the
page's session id, which starts the gift or gives it a new card. Only the
donor whose Customer saved the card can use it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlmodel import select

from careforall.db import Database
from careforall.models import RecurringDonation
from tests import factories as f
from tests.api.test_recurring import CREATE, UPDATE
from tests.helpers.api import GQL
from tests.helpers.stripe_standin import PUBLIC_URL, StripeStandIn

SETUP = "mutation($c: ID) { startCardSetup(campaignId: $c) { url } }"


def _save_card(
    gql: GQL, token: str, card: str, campaign_id: str | None = None
) -> tuple[str, str]:
    """The donor saves `card` on the Checkout page: where they come back to
    (the app's route) and the session id it carries."""
    url = gql.ok(SETUP, {"c": campaign_id}, token)["startCardSetup"]["url"]
    with httpx.Client() as browser:
        assert "Save a card" in browser.get(url).text
        saved = browser.post(url, data={"method": card})
    assert saved.status_code == 303
    back = saved.headers["location"]
    assert back.startswith(f"{PUBLIC_URL}/#/")
    route, _, query = urlsplit(back).fragment.partition("?")
    [session_id] = parse_qs(query)["card_setup"]
    return route, session_id


def _plan_input(campaign_id: str, card: str, **changes: Any) -> dict[str, Any]:
    return {
        "input": {
            "campaignId": campaign_id,
            "amountCents": 2_500,
            "paymentMethod": card,
            "idempotencyKey": f.unique("plan"),
        }
        | changes
    }


def test_a_gift_starts_with_the_card_saved_on_stripes_page(
    hosted_gql: GQL, stripe_standin: StripeStandIn, db: Database
) -> None:
    donor = f.register(hosted_gql)
    campaign = f.campaign(hosted_gql, f.admin(hosted_gql).token)
    route, session_id = _save_card(
        hosted_gql, donor.token, "pm_card_visa", campaign["id"]
    )
    assert route == f"/campaigns/{campaign['id']}"
    [checkout] = stripe_standin.book.checkouts.values()
    assert (checkout["mode"], checkout["id"]) == ("setup", session_id)
    [customer] = stripe_standin.book.customers.values()
    assert checkout["customer"] == customer["id"]
    assert customer["metadata"] == {"user_id": donor.id}

    plan = hosted_gql.ok(CREATE, _plan_input(campaign["id"], session_id), donor.token)[
        "createRecurringDonation"
    ]
    assert plan["status"] == "ACTIVE"
    [charge] = plan["charges"]["edges"]
    assert charge["node"]["status"] == "AUTHORIZED"
    intent = stripe_standin.intent_for(charge["node"]["id"])
    [saved] = stripe_standin.book.payment_methods.values()
    assert (intent["customer"], intent["payment_method"]) == (
        customer["id"],
        saved["id"],
    )
    assert intent["setup_future_usage"] == "off_session"
    # No second SetupIntent: the page saved the card.
    assert len(stripe_standin.book.setup_intents) == 1


def test_a_new_card_saved_on_stripes_page_replaces_the_gifts_card(
    hosted_gql: GQL, stripe_standin: StripeStandIn, db: Database
) -> None:
    donor = f.register(hosted_gql)
    campaign = f.campaign(hosted_gql, f.admin(hosted_gql).token)
    _, first = _save_card(hosted_gql, donor.token, "pm_card_visa", campaign["id"])
    plan = hosted_gql.ok(CREATE, _plan_input(campaign["id"], first), donor.token)[
        "createRecurringDonation"
    ]
    route, second = _save_card(hosted_gql, donor.token, "pm_card_mastercard")
    assert route == "/donations"
    hosted_gql.ok(
        UPDATE, {"id": plan["id"], "input": {"paymentMethod": second}}, donor.token
    )
    with db.read() as session:
        row = session.get(RecurringDonation, plan["id"])
        assert row is not None
    method_id = row.payment_method.split("/")[1]
    assert stripe_standin.book.payment_methods[method_id]["card"] == (
        "pm_card_mastercard"
    )


def test_another_donors_page_or_an_unfinished_one_is_refused(
    hosted_gql: GQL, stripe_standin: StripeStandIn, db: Database
) -> None:
    donor, other = f.register(hosted_gql), f.register(hosted_gql)
    campaign = f.campaign(hosted_gql, f.admin(hosted_gql).token)
    _, session_id = _save_card(hosted_gql, donor.token, "pm_card_visa", campaign["id"])
    stolen = _plan_input(campaign["id"], session_id)
    assert hosted_gql.code(CREATE, stolen, other.token) == "BAD_USER_INPUT"
    url = hosted_gql.ok(SETUP, {"c": None}, other.token)["startCardSetup"]["url"]
    unfinished = url.rsplit("/", 1)[1]
    unfinished_plan = _plan_input(campaign["id"], unfinished)
    assert hosted_gql.code(CREATE, unfinished_plan, other.token) == "BAD_USER_INPUT"
    with db.read() as session:
        assert session.exec(select(RecurringDonation)).all() == []
    assert stripe_standin.book.payment_intents == {}


def test_card_setup_needs_an_account(hosted_gql: GQL) -> None:
    assert hosted_gql.code(SETUP, {"c": None}) == "UNAUTHENTICATED"
    donor = f.register(hosted_gql)
    assert hosted_gql.code(SETUP, {"c": "cmp_nothing"}, donor.token) == "NOT_FOUND"


def test_card_setup_needs_a_provider_with_hosted_pages(gql: GQL) -> None:
    donor = f.register(gql)
    assert gql.code(SETUP, {"c": None}, donor.token) == "BAD_USER_INPUT"

"""A monthly gift with Stripe in a real browser: "Every month" sends the
signed-in donor to Stripe's page (the stand-in's Checkout in setup mode) to
save the card, and the gift starts on the way back; "Update card" in My
donations saves a new card the same way."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest

from tests import factories as f
from tests.browser.conftest import Pages, shot
from tests.browser.test_stripe_checkout import stripe_web  # noqa: F401 (a fixture)
from tests.helpers.api import ServerGQL
from tests.helpers.browser import expect, sign_in
from tests.helpers.server import Server
from tests.helpers.stripe_standin import StripeStandIn
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.server, pytest.mark.browser]

PASSWORD = "correct horse"  # what tests.factories.register gives every account


def test_a_monthly_gift_saves_the_card_on_stripes_page_and_a_new_card_too(
    browser: Browser,
    stripe_web: Server,  # noqa: F811
    stripe_standin: StripeStandIn,
) -> None:
    with httpx.Client(base_url=stripe_web.base_url, timeout=10.0) as client:
        api = ServerGQL(client)
        organiser = f.register(api, name="Olive Organiser")
        campaign = f.campaign(api, organiser.token, title=f.unique("Dialysis for"))
        donor = f.register(api, name="Molly Monthly")
    pages = Pages(browser=browser, base_url=stripe_web.base_url)
    try:
        page = pages.open("#/signin")
        sign_in(page, donor.email, PASSWORD)
        page.goto(f"/#/campaigns/{campaign['id']}")
        expect(page.get_by_test_id("hosted-payment")).to_be_visible()
        page.get_by_test_id("frequency").get_by_label("Every month").check()
        page.get_by_label("$25.00", exact=True).check()
        page.get_by_role("button", name=re.compile(r"^Donate")).click()

        standin = re.escape(stripe_standin.url)
        page.wait_for_url(re.compile(rf"^{standin}/pay/cs_test_"))
        expect(page.get_by_role("heading")).to_have_text("Save a card")
        page.get_by_role("button", name="Pay", exact=True).click()

        page.wait_for_url(re.compile(r"/#/campaigns/.+\?card_setup=cs_test_"))
        expect(page.locator(".notice-success")).to_contain_text(
            "Your gift of $25.00 every month has started"
        )
        shot(page, "stripe-monthly-started")
        [(plan_id, first_card, status)] = stripe_web.query(
            "SELECT id, payment_method, status FROM recurring_donations", ()
        )
        assert status == "ACTIVE"

        page.goto("/#/donations")
        plan = page.locator(f'[data-plan-id="{plan_id}"]')
        expect(plan).to_contain_text("$25.00 every month")
        plan.get_by_role("button", name="Update card").click()
        page.wait_for_url(re.compile(rf"^{standin}/pay/cs_test_"))
        page.get_by_role("button", name="Pay", exact=True).click()
        page.wait_for_url(re.compile(r"/#/donations\?card_setup=cs_test_"))
        expect(page.locator(".notice-success")).to_contain_text("Card updated")
        shot(page, "stripe-monthly-card-updated")
    finally:
        pages.close()
    assert not pages.errors, pages.errors
    [(new_card,)] = stripe_web.query(
        "SELECT payment_method FROM recurring_donations", ()
    )
    assert new_card != first_card
    assert new_card.split("/")[0] == first_card.split("/")[0]  # one Customer
    # The first period went through the webhooks and the outbox, as any pledge.
    wait_until(stripe_web.settled, timeout=10.0, what="the outbox settled")
    [(charged,)] = stripe_web.query(
        "SELECT status FROM pledges WHERE recurring_donation_id = ?", (plan_id,)
    )
    assert charged == "CAPTURED"
    assert sorted(e.kind for e in stripe_standin.effects()) == [
        "authorize",
        "capture",
        "setup",
        "setup",
    ]

"""Admins see each pledge's payment in a real browser: the provider, Stripe's
PaymentIntent as a link to its page in Stripe's dashboard, what was refunded
and any dispute. Through the Stripe stand-in they refund part of a donation
(an amount too large is refused before anything is sent, a refund Stripe
fails is said so and changes nothing, and the campaign's total falls by
exactly the refund) and cancel an authorization that was never captured
(nothing is charged). With the simulated provider only whole refunds are
offered."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests import factories as f
from tests.browser.conftest import Pages, shot
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD, ServerGQL
from tests.helpers.browser import expect, sign_in
from tests.helpers.server import Server
from tests.helpers.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, StripeStandIn
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = [pytest.mark.server, pytest.mark.browser]

PAYMENT = """query($id: ID!) { pledge(id: $id) {
  refundedCents disputeStatus payment { provider paymentIntentId dashboardUrl }
} }"""
# The admin page lists a pledge as stuck once it has waited this long.
STUCK_AFTER_SECONDS = 5 * 60


@pytest.fixture
def stripe_web(
    browser: Browser,
    make_server: Callable[..., Server],
    stripe_standin: StripeStandIn,
) -> Server:
    """A server paying through the stand-in; an admin captures (so a pledge
    can stay authorized, to be canceled)."""
    server = make_server(
        start=False,
        CAREFORALL_PAYMENT_PROVIDER="stripe",
        CAREFORALL_STRIPE_SECRET_KEY=SECRET_KEY,
        CAREFORALL_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        CAREFORALL_STRIPE_API_BASE=stripe_standin.url,
        CAREFORALL_AUTO_CAPTURE="false",
    )
    stripe_standin.webhook_url = f"{server.base_url}/webhooks/stripe"
    server.start()
    return server


@pytest.fixture
def stripe_api(stripe_web: Server) -> Iterator[ServerGQL]:
    with httpx.Client(base_url=stripe_web.base_url, timeout=10.0) as client:
        yield ServerGQL(client)


def authorized(api: ServerGQL, token: str, campaign_id: str, amount: int) -> str:
    pledge = f.pledge(api, token, campaign_id, amount)
    paid = api.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_visa"}, token)
    assert paid["authorizePayment"]["status"] == "AUTHORIZED"
    pledge_id: str = pledge["id"]
    return pledge_id


def admin_page(pages: Pages, *, minutes_later: float = 0) -> Page:
    """The admin page, signed in; its clock `minutes_later` ahead, so that
    pledges made just now already count as stuck."""
    context = pages.visitor()
    if minutes_later:
        context.clock.set_fixed_time(time.time() + minutes_later * 60)
    page = pages.open("#/signin?next=/admin", context=context)
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()
    return page


def row_of(page: Page, panel: str, pledge_id: str) -> Locator:
    return page.get_by_test_id(panel).locator(f"tr[data-pledge-id='{pledge_id}']")


def test_an_admin_sees_stripe_payments_refunds_part_and_cancels_an_authorization(
    browser: Browser,
    stripe_web: Server,
    stripe_api: ServerGQL,
    stripe_standin: StripeStandIn,
) -> None:
    api = stripe_api
    admin = f.admin(api)
    organiser = f.register(api, name="Olive Organiser")
    campaign = f.campaign(api, organiser.token, title=f.unique("A hearing aid for"))
    donor = f.register(api, name="Dora Donor")
    refunded = authorized(api, donor.token, campaign["id"], 4000)
    disputed = authorized(api, donor.token, campaign["id"], 2500)
    held = authorized(api, donor.token, campaign["id"], 3000)
    for pledge_id in (refunded, disputed):
        api.ok(f.CAPTURE, {"id": pledge_id}, admin.token)
    wait_until(lambda: f.totals(api, campaign["id"]) == (6500, 2))
    # The donor's bank disputes one payment: Stripe says so by webhook.
    dispute = stripe_standin.book.dispute(stripe_standin.intent_for(disputed)["id"])
    event = stripe_standin.event("charge.dispute.created", dispute)
    assert stripe_standin.post_event(event) == 200
    payment = api.ok(PAYMENT, {"id": refunded}, admin.token)["pledge"]["payment"]
    intent = stripe_standin.intent_for(refunded)["id"]
    assert payment == {
        "provider": "stripe",
        "paymentIntentId": intent,
        "dashboardUrl": f"https://dashboard.stripe.com/test/payments/{intent}",
    }

    pages = Pages(browser=browser, base_url=stripe_web.base_url)
    try:
        watcher = pages.open(f"#/campaigns/{campaign['id']}")
        expect(watcher.get_by_test_id("live-status")).to_have_text(re.compile("^Live"))
        expect(watcher.get_by_test_id("raised")).to_have_text("$65.00")
        page = admin_page(pages, minutes_later=2 * STUCK_AFTER_SECONDS / 60)

        # The provider, and the PaymentIntent as a link to Stripe's dashboard
        # that opens apart from the app and tells it nothing.
        row = row_of(page, "admin-captured", refunded)
        expect(row.locator("td.payment")).to_contain_text("Stripe")
        link = row.get_by_role("link", name=re.compile(intent))
        expect(link).to_have_attribute("href", payment["dashboardUrl"])
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        expect(row.get_by_test_id("refunded")).to_have_text("$0.00")
        expect(
            row_of(page, "admin-captured", disputed).get_by_test_id("dispute")
        ).to_have_text("Needs a response")
        expect(row_of(page, "admin-captured", held)).to_have_count(0)
        shot(page, "admin-payments")

        # More than the donation: refused in the form, nothing is sent.
        part = re.compile(r"^Refund part of \$40\.00")
        row.get_by_role("button", name=part).click()
        amount = row.get_by_label("Amount to refund (USD)")
        amount.fill("45")
        row.get_by_role("button", name="Continue").click()
        expect(amount).to_have_attribute("aria-invalid", "true")
        expect(row).to_contain_text("At most $40.00 is left to refund.")
        # Stripe fails the refund: the admin is told, nothing changed.
        stripe_standin.fail_next("refund", "500")
        amount.fill("12.50")
        row.get_by_role("button", name="Continue").click()
        expect(row.get_by_role("alert")).to_contain_text("Refund $12.50 of $40.00")
        shot(page, "admin-partial-refund-confirm")
        assert f.totals(api, campaign["id"]) == (6500, 2)  # asking is not refunding
        row.get_by_role("button", name="Refund $12.50 now").click()
        expect(row.get_by_role("alert")).to_contain_text("Could not refund")
        expect(row.get_by_test_id("refunded")).to_have_text("$0.00")
        assert f.totals(api, campaign["id"]) == (6500, 2)
        # Again: refunded, and the campaign's total falls by exactly that.
        row.get_by_role("button", name=part).click()
        row.get_by_label("Amount to refund (USD)").fill("12.50")
        row.get_by_role("button", name="Continue").click()
        row.get_by_role("button", name="Refund $12.50 now").click()
        expect(row.get_by_role("status")).to_contain_text(
            "Refunded $12.50 of $40.00; $27.50 is left."
        )
        expect(row.get_by_test_id("refunded")).to_have_text("$12.50")
        expect(row).to_contain_text("Captured")
        expect(
            row.get_by_role("button", name=re.compile(r"^Refund \$27\.50"))
        ).to_be_visible()
        shot(page, "admin-partial-refund-done")
        expect(watcher.get_by_test_id("raised")).to_have_text("$52.50")

        # The authorization never captured: cancel it, nothing is charged.
        stuck = row_of(page, "admin-stuck", held)
        expect(stuck).to_contain_text("Authorized")
        held_intent = stripe_standin.intent_for(held)["id"]
        expect(stuck.get_by_role("link", name=re.compile(held_intent))).to_be_visible()
        stuck.get_by_role(
            "button", name=re.compile(r"^Cancel the authorization of \$30\.00")
        ).click()
        expect(stuck.get_by_role("alert")).to_contain_text("The card is not charged")
        shot(page, "admin-cancel-confirm")
        stuck.get_by_role("button", name="Cancel it now").click()
        expect(stuck.get_by_role("status")).to_contain_text("Canceled: $30.00")
        expect(stuck).to_contain_text("Declined")
        expect(stuck.get_by_role("button", name=re.compile("^Cancel"))).to_have_count(0)
    finally:
        pages.close()
    assert not pages.errors, pages.errors

    wait_until(stripe_web.settled, timeout=10.0, what="the outbox settled")
    assert f.totals(api, campaign["id"]) == (5250, 2)
    states = dict(
        stripe_web.query(
            "SELECT id, status FROM pledges WHERE campaign_id = ?", (campaign["id"],)
        )
    )
    assert states == {refunded: "CAPTURED", disputed: "CAPTURED", held: "FAILED"}
    shown = api.ok(PAYMENT, {"id": refunded}, admin.token)["pledge"]
    assert shown["refundedCents"] == 1250
    # Stripe moved the money once each: one refund of the part, one cancel.
    assert [(e.payment_intent, e.amount) for e in stripe_standin.effects("refund")] == [
        (intent, 1250)
    ]
    assert [e.payment_intent for e in stripe_standin.effects("cancel")] == [held_intent]


def test_with_the_simulated_provider_an_admin_is_offered_whole_refunds_only(
    pages: Pages, api: ServerGQL
) -> None:
    organiser = f.register(api, name="Olive Organiser")
    campaign = f.campaign(api, organiser.token, title=f.unique("Glasses for"))
    donor = f.register(api, name="Dora Donor")
    pledge = f.pledge(api, donor.token, campaign["id"], 2000)
    api.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    wait_until(lambda: f.totals(api, campaign["id"]) == (2000, 1))

    page = admin_page(pages)
    row = row_of(page, "admin-captured", pledge["id"])
    expect(row.locator("td.payment")).to_have_text("Simulated")
    expect(row.locator("td.payment a")).to_have_count(0)
    expect(row.get_by_test_id("refunded")).to_have_text("$0.00")
    expect(row.get_by_test_id("dispute")).to_have_count(0)
    expect(
        row.get_by_role("button", name=re.compile(r"^Refund \$20\.00"))
    ).to_be_visible()
    expect(row.get_by_role("button", name=re.compile("^Refund part"))).to_have_count(0)
    shot(page, "admin-payments-simulated")

"""With Stripe, the web app sends the donor to Stripe's Checkout page (the
stand-in's) and Stripe sends them back to the campaign, which shows the
donation once Stripe's webhooks have moved it. No Stripe script runs on the
app's pages, so the CSP is the same strict one."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests import factories as f
from tests.browser.conftest import Pages, shot
from tests.helpers.api import ServerGQL
from tests.helpers.browser import expect
from tests.helpers.server import Server
from tests.helpers.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, StripeStandIn
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.server, pytest.mark.browser]


@pytest.fixture
def stripe_web(
    browser: Browser,
    tmp_path: Path,
    template_db: Path,
    stripe_standin: StripeStandIn,
) -> Iterator[Server]:
    db_path = tmp_path / "careforall.db"
    shutil.copy(template_db, db_path)
    server = Server(
        tmp_path,
        db_path,
        CAREFORALL_PAYMENT_PROVIDER="stripe",
        CAREFORALL_STRIPE_SECRET_KEY=SECRET_KEY,
        CAREFORALL_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        CAREFORALL_STRIPE_API_BASE=stripe_standin.url,
    )
    server.env["CAREFORALL_PUBLIC_URL"] = server.base_url
    stripe_standin.webhook_url = f"{server.base_url}/webhooks/stripe"
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_donation_goes_through_checkout_and_back_to_the_campaign(
    browser: Browser, stripe_web: Server, stripe_standin: StripeStandIn
) -> None:
    with httpx.Client(base_url=stripe_web.base_url, timeout=10.0) as client:
        api = ServerGQL(client)
        organiser = f.register(api, name="Olive Organiser")
        campaign = f.campaign(api, organiser.token, title=f.unique("A wheelchair for"))
        csp = client.get("/").headers["content-security-policy"]
    assert "stripe" not in csp and "script-src 'self'" in csp
    pages = Pages(browser=browser, base_url=stripe_web.base_url)
    try:
        route = f"#/campaigns/{campaign['id']}"
        page = pages.open(route)
        expect(page.get_by_test_id("hosted-payment")).to_be_visible()
        expect(page.get_by_test_id("simulated-payments")).to_be_hidden()
        shot(page, "stripe-donate-form")
        page.get_by_label("$25.00", exact=True).check()
        page.get_by_label("Your name").fill("Bea")
        page.get_by_role("button", name=re.compile(r"^Donate")).click()

        page.wait_for_url(re.compile(rf"^{re.escape(stripe_standin.url)}/pay/cs_test_"))
        expect(page.get_by_role("heading")).to_have_text("Pay 25.00 USD")
        shot(page, "stripe-checkout-standin", check=False)
        page.get_by_role("button", name="Pay", exact=True).click()

        page.wait_for_url(f"{stripe_web.base_url}/{route}")
        page.wait_for_selector("main:not([aria-busy])")
        expect(page.get_by_test_id("raised")).to_have_text("$25.00")
        expect(page.locator(".recent")).to_contain_text("Bea gave $25.00")
        shot(page, "stripe-back-on-the-campaign")
    finally:
        pages.close()
    assert not pages.errors, pages.errors
    wait_until(stripe_web.settled, timeout=10.0, what="the outbox settled")
    [(status,)] = stripe_web.query(
        "SELECT status FROM pledges WHERE campaign_id = ?", (campaign["id"],)
    )
    assert status == "CAPTURED"
    assert [e.kind for e in stripe_standin.effects()] == ["authorize", "capture"]

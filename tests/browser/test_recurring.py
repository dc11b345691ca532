"""Recurring gifts in a real browser: a signed-in donor gives monthly from the
donate form, then changes the amount, pauses, resumes and cancels the gift in
My donations; a guest is never offered a recurring gift."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests import factories as f
from tests.browser.conftest import Pages, shot
from tests.browser.test_donors import new_campaign
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD, ServerGQL
from tests.helpers.browser import donate, expect, sign_in
from tests.helpers.server import Server

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.server, pytest.mark.browser]

PASSWORD = "correct horse"  # what tests.factories.register gives every account


def plan_of(server: Server, campaign_id: str) -> tuple[str, int, str]:
    [row] = server.query(
        "SELECT id, amount_cents, status FROM recurring_donations "
        "WHERE campaign_id = ?",
        (campaign_id,),
    )
    return str(row[0]), int(row[1]), str(row[2])


def test_a_donor_starts_changes_pauses_and_cancels_a_monthly_gift(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    campaign = new_campaign(api)
    donor = f.register(api, name="Molly Monthly")
    page: Page = pages.open("#/signin")
    sign_in(page, donor.email, PASSWORD)
    page.goto(f"/#/campaigns/{campaign['id']}")
    frequency = page.get_by_test_id("frequency")
    frequency.get_by_label("Every month").check()
    shot(page, "recurring-donate-form")
    donate(page, preset="$25.00")
    expect(page.locator(".notice-success")).to_contain_text(
        "Your gift of $25.00 every month has started"
    )
    plan_id, amount, status = plan_of(web_server, campaign["id"])
    assert (amount, status) == (2_500, "ACTIVE")

    page.get_by_role("link", name="My donations").first.click()
    plan = page.locator(f'[data-plan-id="{plan_id}"]')
    expect(plan).to_contain_text("$25.00 every month")
    expect(plan).to_contain_text("Active")
    shot(page, "recurring-my-donations")

    plan.get_by_label(re.compile("New amount")).fill("40")
    plan.get_by_role("button", name="Change amount").click()
    plan = page.locator(f'[data-plan-id="{plan_id}"]')
    expect(plan).to_contain_text("$40.00 every month")
    plan.get_by_role("button", name="Pause").click()
    expect(page.locator(f'[data-plan-id="{plan_id}"]')).to_contain_text("Paused")
    page.locator(f'[data-plan-id="{plan_id}"]').get_by_role(
        "button", name="Resume"
    ).click()
    expect(page.locator(f'[data-plan-id="{plan_id}"]')).to_contain_text("Active")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f'[data-plan-id="{plan_id}"]').get_by_role(
        "button", name="Cancel"
    ).click()
    expect(page.locator(f'[data-plan-id="{plan_id}"]')).to_contain_text("Cancelled")
    shot(page, "recurring-cancelled")
    assert plan_of(web_server, campaign["id"])[1:] == (4_000, "CANCELLED")
    # The first period stays paid, as a donation of its own.
    paid = web_server.query(
        "SELECT count(*) FROM pledges WHERE recurring_donation_id = ? "
        "AND status IN ('AUTHORIZED', 'CAPTURED')",
        (plan_id,),
    )
    assert paid == [(1,)]
    # The year's summary counts it, once it is captured.
    page.reload()
    expect(page.get_by_test_id("giving-total-USD")).to_have_text("$25.00")
    shot(page, "recurring-yearly-summary")


def test_a_guest_is_not_offered_a_recurring_gift(pages: Pages, api: ServerGQL) -> None:
    campaign = new_campaign(api)
    page = pages.open(f"#/campaigns/{campaign['id']}")
    expect(page.get_by_role("button", name=re.compile("^Donate"))).to_be_visible()
    expect(page.get_by_test_id("frequency")).to_have_count(0)


def test_an_organiser_sees_monthly_donors_on_my_campaigns(
    pages: Pages, api: ServerGQL
) -> None:
    organiser = f.register(api, name="Otto Organiser")
    campaign = f.campaign(api, organiser.token, title=f.unique("Dialysis for"))
    for amount in (1_000, 1_500):
        api.ok(
            "mutation($input: RecurringDonationInput!) {"
            " createRecurringDonation(input: $input) { id } }",
            {
                "input": {
                    "campaignId": campaign["id"],
                    "amountCents": amount,
                    "paymentMethod": "pm_card_ok",
                    "idempotencyKey": f.unique("plan"),
                }
            },
            f.register(api).token,
        )
    page = pages.open("#/signin")
    sign_in(page, organiser.email, PASSWORD)
    page.goto("/#/mine")
    expect(page.get_by_test_id("monthly-giving")).to_have_text(
        "2 monthly donors · $25.00 a month"
    )
    shot(page, "recurring-organiser-monthly-donors")


def test_an_admin_sees_a_failing_recurring_gift(pages: Pages, api: ServerGQL) -> None:
    campaign = new_campaign(api)
    api.ok(
        "mutation($input: RecurringDonationInput!) {"
        " createRecurringDonation(input: $input) { id status } }",
        {
            "input": {
                "campaignId": campaign["id"],
                "amountCents": 1_700,
                "paymentMethod": "pm_card_declined",
                "idempotencyKey": f.unique("plan"),
            }
        },
        f.register(api).token,
    )
    page = pages.open("#/signin?next=/admin")
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    panel = page.get_by_test_id("admin-failing-plans")
    row = panel.get_by_role("row").filter(has_text=campaign["title"])
    expect(row).to_contain_text("$17.00")
    expect(row).to_contain_text("paused")
    expect(row).to_contain_text("Your card was declined.")
    shot(page, "recurring-admin-failing")

"""Notifications in a real browser: a donor's bell rises by itself when their
payment is captured (and again when a card is declined), reading clears it;
an organiser hears of a donation made on another visitor's page, follows it,
and finds it on the notifications page."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests import factories as f
from tests.browser.conftest import Pages, shot
from tests.helpers.api import ServerGQL
from tests.helpers.browser import donate, expect, sign_in
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.server, pytest.mark.browser]


def signed_in(pages: Pages, account: f.Account, route: str) -> Page:
    page = pages.open(f"#/signin?next={route}")
    sign_in(page, account.email, "correct horse")
    expect(page).to_have_url(re.compile(f"#{route}$"))
    return page


def unread_in_database(server: Server, user_id: str) -> int:
    count: int = server.scalar(
        "SELECT count(*) FROM notifications "
        "WHERE recipient_user_id = ? AND read_at IS NULL",
        (user_id,),
    )
    return count


def test_a_donors_bell_rises_live_when_their_payment_is_captured(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    organiser = f.register(api, name="Olive Organiser")
    campaign = f.campaign(api, organiser.token, title=f.unique("A wheelchair for"))
    donor = f.register(api, name="Dora Donor")
    page = signed_in(pages, donor, "/donations")
    bell, count = page.get_by_test_id("bell"), page.get_by_test_id("bell-count")
    expect(bell).to_have_attribute("aria-label", "Notifications: none unread")
    expect(count).to_be_hidden()
    page.evaluate("window.__sameDocument = true")

    # The donor pays from elsewhere (a phone, say); this page only listens.
    pledge = f.pledge(api, donor.token, campaign["id"], 2500)
    api.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    expect(count).to_have_text("1")
    expect(bell).to_have_attribute("aria-label", "Notifications: 1 unread")
    assert page.evaluate("window.__sameDocument") is True
    # The open My donations page shows the donation too, already paid.
    row = page.get_by_role("table", name="Your donations, newest first").locator(
        "tbody tr"
    )
    expect(row).to_have_count(1)
    expect(row).to_contain_text(campaign["title"])
    expect(row).to_contain_text("$25.00")
    expect(row).to_contain_text("Captured")
    shot(page, "bell-unread")

    bell.click()
    panel = page.get_by_role("region", name="Notifications")
    expect(panel).to_contain_text("Your donation was received")
    expect(panel).to_contain_text(f"25.00 USD to “{campaign['title']}”")
    expect(bell).to_have_attribute("aria-expanded", "true")
    shot(page, "bell-open")

    # A declined card arrives while the list is open: it joins the list.
    declined = f.pledge(api, donor.token, campaign["id"], 900)
    api.ok(f.AUTHORIZE, {"id": declined["id"], "pm": "pm_card_declined"}, donor.token)
    expect(count).to_have_text("2")
    expect(panel.locator(".notification").first).to_contain_text(
        "Your payment did not go through"
    )

    panel.get_by_role("button", name="Mark all read").click()
    expect(count).to_be_hidden()
    expect(bell).to_have_attribute("aria-label", "Notifications: none unread")
    expect(panel.locator(".notification.unread")).to_have_count(0)
    shot(page, "bell-all-read")
    assert unread_in_database(web_server, donor.id) == 0

    # Escape closes the list and gives the focus back to the bell.
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(bell).to_be_focused()


def test_an_organiser_hears_of_a_donation_and_follows_it(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    organiser = f.register(api, name="Olive Organiser")
    campaign = f.campaign(api, organiser.token, title=f.unique("New lungs for"))
    page = signed_in(pages, organiser, "/mine")
    count = page.get_by_test_id("bell-count")
    expect(page.get_by_test_id("bell")).to_be_visible()

    # A guest gives on their own page, with a name.
    guest = pages.open(f"#/campaigns/{campaign['id']}")
    donate(guest, amount="12", name="Rosa")
    expect(guest.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    # The guest's own bell says it was received.
    expect(guest.get_by_test_id("bell-count")).to_have_text("1")

    expect(count).to_have_text("1")
    page.get_by_test_id("bell").click()
    panel = page.get_by_role("region", name="Notifications")
    item = panel.locator(".notification").first
    expect(item).to_contain_text("New donation")
    expect(item).to_contain_text(f"Rosa gave 12.00 USD to “{campaign['title']}”")
    shot(page, "bell-organiser")

    # Following it opens the campaign and marks it read.
    item.get_by_role("link", name="New donation").click()
    expect(page).to_have_url(re.compile(f"#/campaigns/{campaign['id']}$"))
    expect(page.get_by_test_id("raised")).to_have_text("$12.00")
    expect(count).to_be_hidden()
    expect(panel).to_be_hidden()
    wait_until(lambda: unread_in_database(web_server, organiser.id) == 0)

    page.get_by_test_id("bell").click()
    panel.get_by_role("link", name="See all notifications").click()
    expect(page.get_by_role("heading", name="Notifications", level=1)).to_be_visible()
    main = page.get_by_role("main")
    expect(main.get_by_test_id("unread-status")).to_have_text("Everything is read.")
    expect(main.locator(".notification")).to_have_count(1)
    expect(main.locator(".notification")).to_contain_text("Rosa gave 12.00 USD")
    shot(page, "notifications-page")

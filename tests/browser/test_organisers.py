"""Organisers and every visitor in a real browser: starting and managing a
campaign, signing in, the campaign list, and the app on a phone-width screen
driven by the keyboard."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests import factories as f
from tests.browser.conftest import PHONE, Pages, shot
from tests.helpers.api import ServerGQL
from tests.helpers.browser import expect
from tests.helpers.server import Server

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.server, pytest.mark.browser]


def status_of(server: Server, campaign_id: str) -> str:
    status: str = server.scalar(
        "SELECT status FROM campaigns WHERE id = ?", (campaign_id,)
    )
    return status


def campaign_id_from(page: Page) -> str:
    match = re.search(r"#/campaigns/([^/?]+)$", page.url)
    assert match, page.url
    return match.group(1)


def test_an_organiser_registers_starts_pauses_resumes_and_closes_a_campaign(
    pages: Pages, web_server: Server
) -> None:
    page = pages.open("#/start")
    expect(page.get_by_role("main")).to_contain_text("You need an account")
    shot(page, "start-signed-out")

    page.get_by_role("main").get_by_role("link", name="register").click()
    page.get_by_label("Your name").fill("Olive Organiser")
    page.get_by_label("Email").fill(f"{f.unique('olive')}@example.org")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Create my account").click()
    # Back where the visitor was going, now able to start a campaign.
    expect(page.get_by_role("heading", name="Start a campaign")).to_be_visible()
    expect(page).to_have_url(re.compile("#/start$"))

    page.get_by_role("button", name="Start the campaign").click()
    expect(page.get_by_role("alert")).to_contain_text("Give the campaign a title.")
    shot(page, "start-form-problems")

    title = f.unique("Physiotherapy for Tom")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Category").fill("rehabilitation")
    page.get_by_label("Goal").fill("2500.50")
    page.get_by_label("Currency").select_option("EUR")
    page.get_by_label("The story").fill(
        "Tom broke his back.\n\nHe needs a year of care."
    )
    shot(page, "start-form")
    page.get_by_role("button", name="Start the campaign").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.get_by_role("main")).to_contain_text("Your campaign is live")
    expect(page.get_by_test_id("raised")).to_have_text("€0.00")
    expect(page.get_by_role("main")).to_contain_text("raised of €2,500.50 goal")
    campaign_id = campaign_id_from(page)
    row = web_server.query(
        "SELECT title, category, goal_cents, currency, status, description "
        "FROM campaigns WHERE id = ?",
        (campaign_id,),
    )
    assert row == [
        (
            title,
            "rehabilitation",
            250_050,
            "EUR",
            "ACTIVE",
            "Tom broke his back.\n\nHe needs a year of care.",
        )
    ]
    shot(page, "campaign-organiser")

    page.get_by_role("button", name=f"Pause “{title}”").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("Paused")
    expect(page.locator("#donate")).to_contain_text("not taking donations now")
    expect(page.get_by_role("button", name=re.compile("^Donate"))).to_have_count(0)
    assert status_of(web_server, campaign_id) == "PAUSED"
    shot(page, "campaign-paused")

    page.get_by_role("link", name="My campaigns").click()
    card = page.locator("article.card", has_text=title)
    expect(card.locator(".badge-campaign")).to_have_text("Paused")
    shot(page, "my-campaigns")
    card.get_by_role("button", name=f"Resume “{title}”").click()
    expect(card.locator(".badge-campaign")).to_have_text("Active")
    assert status_of(web_server, campaign_id) == "ACTIVE"

    card.get_by_role("button", name=f"Close “{title}”").click()
    expect(card.get_by_role("alert")).to_contain_text("Closing is final")
    assert status_of(web_server, campaign_id) == "ACTIVE"  # not before confirming
    card.get_by_role("button", name="Close for good").click()
    expect(card.locator(".badge-campaign")).to_have_text("Closed")
    expect(card).to_contain_text("cannot be reopened")
    assert status_of(web_server, campaign_id) == "CLOSED"


def test_sign_in_shows_a_wrong_password_in_words_then_signs_in(
    pages: Pages, api: ServerGQL
) -> None:
    account = f.register(api, name="Sam Signer")
    page = pages.open("#/signin")
    shot(page, "signin")

    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill("not my password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    message = alert.inner_text()
    assert "{" not in message and "extensions" not in message, message
    assert (
        message
        == api(f.LOGIN, {"email": account.email, "password": "not my password"})[
            "errors"
        ][0]["message"]
    )
    shot(page, "signin-wrong-password")

    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("main")).to_contain_text("Welcome back, Sam Signer.")
    expect(page.get_by_text("Signed in as Sam Signer")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("main")).to_contain_text("You are signed out.")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()


def test_the_campaign_list_pages_with_load_more(pages: Pages, api: ServerGQL) -> None:
    organiser = f.register(api)
    titles = [f.campaign(api, organiser.token)["title"] for _ in range(13)]
    page = pages.open("#/")
    cards = page.locator("ul.cards > li")
    expect(cards).to_have_count(12)
    expect(cards.first).to_contain_text(titles[-1])  # newest first
    expect(cards.first.get_by_role("progressbar")).to_have_accessible_name(
        "$0.00 raised of $5,000.00"
    )
    shot(page, "campaigns")
    more = page.get_by_role("button", name="Load more campaigns")
    while more.is_visible():
        count = cards.count()
        more.click()
        expect(cards).not_to_have_count(count)
    listed = cards.locator("h2").all_inner_texts()
    assert set(titles) <= set(listed)
    assert len(listed) == len(set(listed))  # no campaign twice


NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def test_a_phone_user_donates_with_the_keyboard_alone(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    organiser = f.register(api, name="Pia Organiser")
    campaign = f.campaign(
        api, organiser.token, title="An insulin pump for Noor, who is seven"
    )
    context = pages.visitor(PHONE)
    page = pages.open("#/", context=context)
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    shot(page, "phone-campaigns")

    page.goto(f"/#/campaigns/{campaign['id']}")
    expect(page.get_by_test_id("live-status")).to_have_text(re.compile("^Live"))
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    shot(page, "phone-campaign")

    # Keyboard only: Tab to "Donate now", follow it, type an amount, Tab on to
    # the donate button and press Enter.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Donate now":
            break
    else:
        pytest.fail("Tab never reached the 'Donate now' link")
    page.keyboard.press("Enter")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id").startswith("amount-custom"):
            break
    else:
        pytest.fail("Tab never reached the custom amount")
    page.keyboard.type("7.5")
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.type") == "submit":
            break
    else:
        pytest.fail("Tab never reached the donate button")
    assert page.evaluate("document.activeElement.textContent") == "Donate $7.50"
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    expect(page.get_by_test_id("raised")).to_have_text("$7.50")
    assert f.totals(api, campaign["id"]) == (750, 1)
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    shot(page, "phone-donated")

    for route, name in [
        ("#/donations", "phone-my-donations"),
        ("#/register", "phone-register"),
        ("#/start", "phone-start-signed-out"),
    ]:
        page.goto(f"/{route}")
        page.wait_for_selector("main:not([aria-busy])")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), route
        shot(page, name)


def test_unknown_pages_and_campaigns_say_so(pages: Pages) -> None:
    page = pages.open("#/nowhere")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    page.goto("/#/campaigns/cmp_does_not_exist")
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaign not found")
    page.goto("/#/donations/plg_does_not_exist")
    expect(page.get_by_role("main")).to_contain_text("This browser has no donations")
    shot(page, "receipt-without-session")

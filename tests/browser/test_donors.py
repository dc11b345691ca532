"""Donors in a real browser: giving as a guest with live totals on another
page, a declined card, one pledge per attempt whatever the clicks and the
network do, and a guest who registers keeping their donations."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from tests import factories as f
from tests.browser.conftest import Pages, shot
from tests.helpers.api import ServerGQL
from tests.helpers.browser import donate, expect
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = [pytest.mark.server, pytest.mark.browser]


def new_campaign(api: ServerGQL, **overrides: Any) -> dict[str, Any]:
    organiser = f.register(api, name="Olive Organiser")
    return f.campaign(
        api,
        organiser.token,
        **{
            "title": f.unique("A new hip for"),
            "description": "Grandma Rosa needs a hip replacement.\n\nShe is 81.",
        }
        | overrides,
    )


def pledges_of(server: Server, campaign_id: str) -> list[tuple[Any, ...]]:
    return server.query(
        "SELECT id, status, amount_cents, idempotency_key, failure_reason "
        "FROM pledges WHERE campaign_id = ? ORDER BY id",
        (campaign_id,),
    )


def session_of(page: Page) -> dict[str, Any]:
    raw = page.evaluate("localStorage.getItem('careforall.session')")
    assert raw, "no session kept in this browser"
    value: dict[str, Any] = json.loads(raw)
    return value


def test_a_guest_donation_raises_the_total_on_another_open_page_without_a_reload(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    campaign = new_campaign(api)
    route = f"#/campaigns/{campaign['id']}"
    watcher = pages.open(route)
    expect(watcher.get_by_test_id("live-status")).to_have_text(re.compile("^Live"))
    expect(watcher.get_by_test_id("raised")).to_have_text("$0.00")
    watcher.evaluate("window.__sameDocument = true")
    shot(watcher, "campaign-before-donation")

    guest = pages.open(route)
    shot(guest, "campaign-donate-form")
    donate(guest, preset="$25.00", name="Ada", message="Get well soon, Rosa!")

    status = guest.get_by_test_id("pledge-status")
    expect(status).to_have_attribute("data-status", "CAPTURED")
    expect(guest.locator(".notice-success")).to_contain_text("Thank you!")
    shot(guest, "campaign-donation-captured")

    # The other page moves by itself: same document, new totals, the new donor.
    expect(watcher.get_by_test_id("raised")).to_have_text("$25.00")
    expect(watcher.get_by_test_id("pledge-count")).to_have_text("1 donation")
    expect(watcher.locator(".recent")).to_contain_text("Ada gave $25.00")
    expect(watcher.locator(".recent")).to_contain_text("Get well soon, Rosa!")
    assert watcher.evaluate("window.__sameDocument") is True
    shot(watcher, "campaign-total-rose-live")

    assert f.totals(api, campaign["id"]) == (2500, 1)
    [(_, state, amount, _, _)] = pledges_of(web_server, campaign["id"])
    assert (state, amount) == ("CAPTURED", 2500)
    # The guest got an anonymous session of their own, kept in the browser.
    assert session_of(guest)["anonymous"] is True


def test_a_declined_card_shows_its_message_and_changes_no_total(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    campaign = new_campaign(api)
    page = pages.open(f"#/campaigns/{campaign['id']}")

    donate(page, amount="40", declined=True)

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Nothing was charged")
    expect(page.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "FAILED"
    )
    [(_, state, _, _, reason)] = pledges_of(web_server, campaign["id"])
    assert state == "FAILED"
    expect(alert).to_contain_text(reason)  # the provider's reason, in words
    shot(page, "campaign-card-declined")
    wait_until(web_server.settled)
    assert f.totals(api, campaign["id"]) == (0, 0)
    expect(page.get_by_test_id("raised")).to_have_text("$0.00")

    # Another card works; a failed attempt is over, so this is a new pledge.
    donate(page)
    expect(page.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    expect(page.get_by_test_id("raised")).to_have_text("$40.00")
    states = [row[1] for row in pledges_of(web_server, campaign["id"])]
    assert states == ["FAILED", "CAPTURED"]
    assert f.totals(api, campaign["id"]) == (4000, 1)


def test_a_double_click_or_a_retry_after_a_dropped_connection_makes_one_pledge(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    campaign = new_campaign(api)
    page = pages.open(f"#/campaigns/{campaign['id']}")
    dropped: list[str] = []
    drop = {"operation": "createPledge"}

    def drop_first_answer(route: Route) -> None:
        body = route.request.post_data or ""
        if drop["operation"] in body:
            drop["operation"] = "nothing more"
            route.fetch()  # the server does the work...
            dropped.append(body)
            route.abort("connectionreset")  # ...and its answer never arrives
        else:
            route.continue_()

    pages.allow(r"Failed to load resource: net::ERR_CONNECTION_RESET")
    page.route("**/graphql", drop_first_answer)
    donate(page, amount="12.50", name="Bea")

    expect(page.get_by_role("alert")).to_contain_text("The connection dropped")
    assert len(pledges_of(web_server, campaign["id"])) == 1  # made, answer lost
    shot(page, "campaign-connection-dropped")

    # The retry sends the same idempotency key: the server answers with the
    # pledge it already made, and the donation completes. A double click on
    # the button sends nothing more.
    page.get_by_role("button", name="Donate $12.50").dblclick()
    expect(page.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    rows = pledges_of(web_server, campaign["id"])
    assert [(r[1], r[2]) for r in rows] == [("CAPTURED", 1250)]
    assert json.loads(dropped[0])["variables"]["input"]["idempotencyKey"] == rows[0][3]

    # A fresh donation by double click: one more pledge, not two.
    page.get_by_role("button", name="Make another donation").click()
    page.get_by_label("Other amount in USD").fill("3")
    page.get_by_role("button", name="Donate $3.00").dblclick()
    expect(page.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    wait_until(web_server.settled)
    assert [(r[1], r[2]) for r in pledges_of(web_server, campaign["id"])] == [
        ("CAPTURED", 1250),
        ("CAPTURED", 300),
    ]
    assert f.totals(api, campaign["id"]) == (1550, 2)

    # The card's answer is lost; the donor retries with the other card. The
    # card is not part of the pledge, so the retry finds the one already paid.
    page.get_by_role("button", name="Make another donation").click()
    drop["operation"] = "authorizePayment"
    donate(page, amount="8")
    expect(page.get_by_role("alert")).to_contain_text("The connection dropped")
    page.get_by_label(re.compile("Card that is declined")).check()
    page.get_by_role("button", name="Donate $8.00").click()
    expect(page.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    wait_until(web_server.settled)
    assert [(r[1], r[2]) for r in pledges_of(web_server, campaign["id"])][2:] == [
        ("CAPTURED", 800)
    ]
    assert f.totals(api, campaign["id"]) == (2350, 3)


def test_a_guest_who_registers_finds_the_earlier_donation_and_its_receipt(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    campaign = new_campaign(api, title=f.unique("Chemotherapy for"))
    page = pages.open(f"#/campaigns/{campaign['id']}")
    donate(page, preset="$50.00", name="Cleo")
    expect(page.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    guest_token = session_of(page)["token"]

    page.get_by_role("link", name="My donations").click()
    rows = page.get_by_role("table", name="Your donations, newest first").locator(
        "tbody tr"
    )
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(campaign["title"])
    shot(page, "my-donations-guest")

    page.get_by_role("link", name="Register").first.click()
    expect(page.get_by_role("heading", name="Register")).to_be_visible()
    shot(page, "register")
    email = f"{f.unique('cleo')}@example.org"
    page.get_by_label("Your name").fill("Cleo Donor")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Donations made in this browser are now in your account."
    )
    session = session_of(page)
    assert session["anonymous"] is False and session["token"] != guest_token
    expect(page.get_by_text("Signed in as Cleo Donor")).to_be_visible()

    page.get_by_role("link", name="My donations").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(campaign["title"])
    expect(rows.first).to_contain_text("$50.00")
    expect(rows.first).to_contain_text("Captured")
    shot(page, "my-donations-member")
    # The server agrees: the donation now belongs to the account.
    mine = api.ok(
        "query { myDonations { edges { node { amountCents campaign { id } } } } }",
        token=session["token"],
    )["myDonations"]["edges"]
    assert [(e["node"]["amountCents"], e["node"]["campaign"]["id"]) for e in mine] == [
        (5000, campaign["id"])
    ]

    rows.first.get_by_role("link", name=re.compile("^Receipt")).click()
    receipt = page.locator("article.receipt")
    expect(receipt.get_by_test_id("receipt-amount")).to_have_text("$50.00")
    expect(receipt).to_contain_text(campaign["title"])
    history = receipt.locator("table.history tbody tr")
    expect(history).to_have_count(3)
    expect(history.nth(0)).to_contain_text("Created as Pending")
    expect(history.nth(1)).to_contain_text("Pending → Authorized")
    expect(history.nth(2)).to_contain_text("Authorized → Captured")
    shot(page, "receipt")
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    expect(page.get_by_role("button", name="Print this receipt")).to_be_hidden()
    shot(page, "receipt-print")


def test_the_payment_page_says_plainly_that_payments_are_simulated(
    pages: Pages, api: ServerGQL
) -> None:
    campaign = new_campaign(api)
    page = pages.open(f"#/campaigns/{campaign['id']}")
    banner = page.get_by_test_id("simulated-payments")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Test mode")
    expect(banner).to_contain_text("no real money moves")
    shot(page, "campaign-simulated-payments")

    donate(page)
    expect(page.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    # Still said beside the thanks.
    expect(page.get_by_test_id("simulated-payments")).to_be_visible()

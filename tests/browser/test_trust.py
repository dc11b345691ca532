"""Campaigns people can trust, in a real browser on a server that reviews new
campaigns: an organiser starts one and it waits hidden; an admin approves it
from the review queue; a donor gives; the organiser edits it and posts an
update; an admin records a payout that the donor then sees beside raised,
refunded, paid out and held; a visitor reports it and the admins read it;
an admin suspends it with a note everyone sees."""

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
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD, ServerGQL
from tests.helpers.browser import expect, sign_in
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.server, pytest.mark.browser]


@pytest.fixture(scope="module")
def web_server(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, template_db: Path
) -> Iterator[Server]:
    """A server of its own that holds new campaigns for review."""
    workdir = tmp_path_factory.mktemp("trust-server")
    db_path = workdir / "careforall.db"
    shutil.copy(template_db, db_path)
    server = Server(workdir, db_path, CAREFORALL_CAMPAIGN_REVIEW="required")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(web_server: Server) -> Iterator[ServerGQL]:
    with httpx.Client(base_url=web_server.base_url, timeout=10.0) as client:
        yield ServerGQL(client)


def signed_in(pages: Pages, route: str, email: str, password: str) -> Page:
    page = pages.open(f"#/signin?next={route}")
    sign_in(page, email, password)
    return page


def test_from_review_to_payout(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    olive = f.register(api, name="Olive Organiser")
    # --- the organiser starts a campaign: it waits for review, hidden -----------
    page = signed_in(pages, "/start", olive.email, "correct horse")
    title = f.unique("Heart surgery for Ana")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Category").fill("surgery")
    page.get_by_label("Goal").fill("1000")
    page.get_by_label("The story").fill("Ana needs an operation.")
    page.get_by_role("button", name="Start the campaign").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    main = page.get_by_role("main")
    expect(main).to_contain_text("waiting for review")
    expect(main).to_contain_text("In review")
    campaign_id = re.search(r"#/campaigns/([^/?]+)$", page.url).group(1)  # type: ignore[union-attr]
    shot(page, "trust-campaign-in-review")

    visitor = pages.open(f"#/campaigns/{campaign_id}")
    expect(visitor.get_by_role("heading", level=1)).to_have_text("Campaign not found")

    # --- an admin approves it from the queue ------------------------------------
    admin = signed_in(pages, "/admin", ADMIN_EMAIL, ADMIN_PASSWORD)
    item = admin.locator(f"li[data-campaign-id='{campaign_id}']")
    expect(item).to_contain_text("The organiser's first campaign.")
    shot(admin, "trust-admin-review-queue")
    item.get_by_role("button", name=f"Approve “{title}”").click()
    expect(admin.get_by_test_id("admin-review")).to_contain_text(
        f"Approved “{title}”: it is live."
    )
    assert (
        web_server.scalar("SELECT status FROM campaigns WHERE id = ?", (campaign_id,))
        == "ACTIVE"
    )

    # --- a donor gives (through the API: the donate form has its own tests) -----
    donor = f.register(api, name="Dora Donor")
    pledge = f.pledge(api, donor.token, campaign_id, 40_000)
    api.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    wait_until(lambda: f.totals(api, campaign_id)[0] == 40_000)

    # --- the organiser edits it and posts an update ------------------------------
    page.reload()
    page.wait_for_selector("main:not([aria-busy])")
    page.get_by_text("Edit the campaign").click()
    page.get_by_label("Campaign title").fill(f"{title} (updated)")
    page.get_by_role("button", name="Save the changes").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{title} (updated)")
    page.get_by_label("Update title").fill("Surgery booked")
    page.get_by_label("What happened").fill("The operation is on Monday.")
    page.get_by_role("button", name="Post the update").click()
    expect(page.locator(".updates")).to_contain_text("Surgery booked")
    shot(page, "trust-campaign-organiser-update")

    # --- an admin reads the edit and records a payout on the campaign page -------
    admin.goto(f"/#/campaigns/{campaign_id}")
    admin.wait_for_selector("main:not([aria-busy])")
    admin.get_by_text("History of changes").click()
    expect(admin.get_by_role("list", name="Changes")).to_contain_text(
        f"Title: {title} → {title} (updated)"
    )
    admin.get_by_text("Record a payout").click()
    admin.get_by_label("Amount paid out (USD)").fill("250")
    admin.get_by_label("Paid to").fill("City Heart Hospital")
    admin.get_by_label("Reference").fill("INV-2041")
    admin.get_by_role("button", name="Record the payout").click()
    expect(admin.get_by_test_id("money-paid-out")).to_have_text("$250.00")

    # --- the donor sees where the money went --------------------------------------
    seen = pages.open(f"#/campaigns/{campaign_id}")
    expect(seen.get_by_role("heading", level=1)).to_have_text(f"{title} (updated)")
    expect(seen.get_by_test_id("money-raised")).to_have_text("$400.00")
    expect(seen.get_by_test_id("money-refunded")).to_have_text("$0.00")
    expect(seen.get_by_test_id("money-paid-out")).to_have_text("$250.00")
    expect(seen.get_by_test_id("money-held")).to_have_text("$150.00")
    expect(seen.get_by_role("list", name="Payouts")).to_contain_text(
        "$250.00 to City Heart Hospital"
    )
    expect(seen.locator(".updates")).to_contain_text("The operation is on Monday.")
    shot(seen, "trust-campaign-money")

    # --- a visitor reports it; the admins read the report -------------------------
    seen.get_by_text("Report this campaign").click()
    seen.get_by_label("Why should the admins look at this campaign?").fill(
        "The same story is on another site."
    )
    seen.get_by_role("button", name="Send the report").click()
    expect(seen.get_by_role("main")).to_contain_text("the admins will look")
    shot(seen, "trust-campaign-reported")
    admin.goto("/#/admin")
    admin.wait_for_selector("main:not([aria-busy])")
    expect(admin.get_by_test_id("admin-reports")).to_contain_text(
        "The same story is on another site."
    )

    # --- an admin suspends it; everyone reads why --------------------------------
    admin.goto(f"/#/campaigns/{campaign_id}")
    admin.wait_for_selector("main:not([aria-busy])")
    admin.get_by_text("Suspend…").click()
    admin.get_by_label("Why is it suspended? (shown on the page)").fill(
        "We are checking the hospital's invoice."
    )
    admin.get_by_role("button", name="Suspend the campaign").click()
    expect(admin.get_by_role("main")).to_contain_text("The campaign is suspended")
    seen.reload()
    seen.wait_for_selector("main:not([aria-busy])")
    expect(seen.get_by_test_id("suspension-note")).to_have_text(
        "We are checking the hospital's invoice."
    )
    expect(seen.get_by_role("main")).to_contain_text("not taking donations")
    shot(seen, "trust-campaign-suspended")


def test_a_rejected_campaign_shows_its_organiser_why(
    pages: Pages, api: ServerGQL
) -> None:
    olive = f.register(api, name="Olive Organiser")
    campaign = f.campaign(api, olive.token, title=f.unique("Therapy for Sam"))
    admin = signed_in(pages, "/admin", ADMIN_EMAIL, ADMIN_PASSWORD)
    item = admin.locator(f"li[data-campaign-id='{campaign['id']}']")
    item.get_by_role("button", name=re.compile("^Reject")).click()
    expect(item).to_contain_text("Say why in the note")
    item.get_by_role("textbox").fill("Please add the clinic's estimate.")
    item.get_by_role("button", name=re.compile("^Reject")).click()
    expect(admin.get_by_test_id("admin-review")).to_contain_text(
        "the organiser is told why"
    )

    page = signed_in(
        pages, f"/campaigns/{campaign['id']}", olive.email, "correct horse"
    )
    expect(page.get_by_role("main")).to_contain_text("was not approved")
    expect(page.get_by_role("main")).to_contain_text(
        "Please add the clinic's estimate."
    )
    shot(page, "trust-campaign-rejected")

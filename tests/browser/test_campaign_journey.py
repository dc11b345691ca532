"""A campaign's whole journey in a real browser, on a server that reviews new
campaigns: an organiser registers and starts a campaign with a cover photo;
it stays hidden until an admin approves it from the review queue; a guest
finds it by a word of its story, gives, and watches the total move; the
organiser posts an update; an admin records a payout to the hospital, which
the donor then sees; and the share link carries the campaign's preview.
On each database: search is each one's own (FTS5, tsvector)."""

from __future__ import annotations

import io
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from PIL import Image

from careforall.endpoints.share import shortened
from tests import postgres
from tests.browser.conftest import Pages, shot
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.helpers.browser import donate, expect, sign_in
from tests.helpers.databases import databases_under_test
from tests.helpers.link_preview import head
from tests.helpers.server import Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.server, pytest.mark.browser]

COVER_LOADED = """() => {
  const img = document.querySelector('[data-testid=cover-image]');
  return Boolean(img && img.complete && img.naturalWidth > 0);
}"""
COVER = re.compile(r"^/media/([0-9a-f]{32})-800\.jpg$")


@pytest.fixture(scope="module", params=databases_under_test())
def web_server(
    request: pytest.FixtureRequest,
    browser: Browser,
    tmp_path_factory: pytest.TempPathFactory,
    template_db: Path,
) -> Iterator[Server]:
    """A server of its own that holds new campaigns for review, its share
    links pointing back at itself, on each database in turn (search is each
    database's own)."""
    workdir = tmp_path_factory.mktemp("journey-server")
    pool: postgres.DatabasePool | None = None
    if request.param == "postgresql":
        pool = request.getfixturevalue("postgres_databases")
        server = Server(workdir, database_url=pool.acquire())
    else:
        db_path = workdir / "careforall.db"
        shutil.copy(template_db, db_path)
        server = Server(workdir, db_path)
    server.env["CAREFORALL_CAMPAIGN_REVIEW"] = "required"
    server.env["CAREFORALL_PUBLIC_URL"] = server.base_url
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if pool is not None:
            pool.release(server.database_url)


def cover_photo() -> bytes:
    """A small JPEG, as a phone's camera would send (a sky and a sun)."""
    image = Image.new("RGB", (640, 400), (70, 130, 180))
    image.paste((250, 210, 80), (260, 120, 380, 240))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def settle(page: Page) -> None:
    """Wait until the page's view has finished loading (after a reload)."""
    page.wait_for_selector("main:not([aria-busy])")


def search(page: Page, words: str) -> None:
    box = page.get_by_label("Search campaigns")
    box.fill("")
    box.fill(words)
    expect(page).to_have_url(re.compile(rf"#/\?q={words}$"))


@dataclass
class Campaign:
    """What the journey made, as the organiser typed it and the server stored it."""

    id: str
    title: str
    story: str
    word: str  # in the story only: what the donor searches for
    cover_hash: str  # the content hash in the cover image's addresses


def start_campaign(pages: Pages, web_server: Server) -> tuple[Page, Campaign]:
    """1. An organiser registers and starts a campaign with a cover photo."""
    word = f"keratoconus{uuid.uuid4().hex[:8]}"
    title = f"New corneas for Lena {uuid.uuid4().hex[:6]}"
    story = (
        f"Lena, 14, has {word} in both eyes.\n\n"
        "A corneal transplant at St Mary's would let her read again."
    )
    page = pages.open("#/register?next=/start")
    page.get_by_label("Your name").fill("Olive Organiser")
    page.get_by_label("Email", exact=True).fill(f"olive-{uuid.uuid4().hex}@example.org")
    page.get_by_label("Password", exact=True).fill("correct horse")
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Start a campaign")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Category").fill("eye surgery")
    page.get_by_label("Goal").fill("3000")
    page.get_by_label("The story").fill(story)
    page.get_by_label("Cover image (optional)").set_input_files(
        {"name": "lena.jpg", "mimeType": "image/jpeg", "buffer": cover_photo()}
    )
    shot(page, "journey-1-start-form")
    page.get_by_role("button", name="Start the campaign").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.get_by_role("main")).to_contain_text("waiting for review")
    page.wait_for_function(COVER_LOADED)
    src = page.get_by_test_id("cover-image").get_attribute("src") or ""
    cover = COVER.match(src)
    assert cover, f"the cover is served from {src!r}"
    campaign_id = re.search(r"#/campaigns/([^/?]+)$", page.url).group(1)  # type: ignore[union-attr]
    status = "SELECT status FROM campaigns WHERE id = ?"
    assert web_server.scalar(status, (campaign_id,)) == "IN_REVIEW"
    shot(page, "journey-1-campaign-in-review")
    return page, Campaign(campaign_id, title, story, word, cover.group(1))


def hidden_then_approved(
    pages: Pages, web_server: Server, donor: Page, campaign: Campaign
) -> Page:
    """2. Nobody finds it until an admin approves it from the review queue."""
    search(donor, campaign.word)
    expect(donor.locator(".list-status")).to_contain_text("No campaigns match")
    expect(donor.locator(".cards .card")).to_have_count(0)
    shot(donor, "journey-2-hidden-from-search")
    share_link = f"{web_server.base_url}/c/{campaign.id}"
    assert httpx.get(share_link).status_code == 404

    admin = pages.open("#/signin?next=/admin")
    sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD)
    item = admin.locator(f"li[data-campaign-id='{campaign.id}']")
    expect(item).to_contain_text(f"Lena, 14, has {campaign.word}")
    expect(item).to_contain_text("The organiser's first campaign.")
    shot(admin, "journey-2-admin-review-queue")
    item.get_by_role("button", name=f"Approve “{campaign.title}”").click()
    expect(admin.get_by_test_id("admin-review")).to_contain_text(
        f"Approved “{campaign.title}”: it is live."
    )
    shot(admin, "journey-2-admin-approved")
    return admin


def find_and_give(donor: Page, campaign: Campaign) -> None:
    """3. A guest finds it by a word of its story, gives, and sees the total move."""
    search(donor, campaign.word)
    cards = donor.locator(".cards .card h2")
    expect(cards).to_have_text([campaign.title])
    shot(donor, "journey-3-found-by-search")
    cards.get_by_role("link", name=campaign.title).click()
    expect(donor.get_by_role("heading", level=1)).to_have_text(campaign.title)
    donor.wait_for_function(COVER_LOADED)
    expect(donor.get_by_test_id("live-status")).to_have_text(re.compile("^Live"))
    expect(donor.get_by_test_id("raised")).to_have_text("$0.00")
    donate(donor, amount="40", name="Ada", message="Read lots of books, Lena!")
    expect(donor.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    expect(donor.get_by_test_id("raised")).to_have_text("$40.00")
    expect(donor.get_by_test_id("pledge-count")).to_have_text("1 donation")
    expect(donor.get_by_test_id("money-raised")).to_have_text("$40.00")
    expect(donor.locator(".recent")).to_contain_text("Ada gave $40.00")
    shot(donor, "journey-3-donor-gave")


def post_update(organiser: Page, donor: Page) -> None:
    """4. The organiser posts an update; the donor reads it on the page."""
    organiser.reload()
    settle(organiser)
    expect(organiser.get_by_test_id("raised")).to_have_text("$40.00")
    organiser.get_by_label("Update title").fill("The transplant is booked")
    organiser.get_by_label("What happened").fill(
        "St Mary's operates on Lena's first eye on Monday."
    )
    organiser.get_by_role("button", name="Post the update").click()
    expect(organiser.locator(".updates")).to_contain_text("The transplant is booked")
    shot(organiser, "journey-4-organiser-posted-update")
    donor.reload()
    settle(donor)
    updates = donor.locator(".updates")
    expect(updates).to_contain_text("The transplant is booked")
    expect(updates).to_contain_text("St Mary's operates on Lena's first eye")
    shot(donor, "journey-4-donor-sees-update")


def record_payout(admin: Page, donor: Page, campaign: Campaign) -> None:
    """5. An admin records a payout to the hospital; the donor sees where the
    money went: raised, refunded, paid out, held, and the payout itself."""
    admin.goto(f"/#/campaigns/{campaign.id}")
    settle(admin)
    admin.get_by_text("Record a payout").click()
    admin.get_by_label("Amount paid out (USD)").fill("25")
    admin.get_by_label("Paid to").fill("St Mary's Eye Hospital")
    admin.get_by_label("Reference").fill("INV-7731")
    admin.get_by_role("button", name="Record the payout").click()
    expect(admin.get_by_test_id("money-paid-out")).to_have_text("$25.00")
    shot(admin, "journey-5-admin-recorded-payout")
    donor.reload()
    settle(donor)
    expect(donor.get_by_test_id("money-raised")).to_have_text("$40.00")
    expect(donor.get_by_test_id("money-refunded")).to_have_text("$0.00")
    expect(donor.get_by_test_id("money-paid-out")).to_have_text("$25.00")
    expect(donor.get_by_test_id("money-held")).to_have_text("$15.00")
    payouts = donor.get_by_role("list", name="Payouts")
    expect(payouts).to_contain_text("$25.00 to St Mary's Eye Hospital")
    expect(payouts).to_contain_text("ref. INV-7731")
    shot(donor, "journey-5-donor-sees-payout")


def share_link(pages: Pages, web_server: Server, campaign: Campaign) -> None:
    """6. The share link's preview tags, as a chat app reads them, and where
    the link lands in a browser."""
    link = f"{web_server.base_url}/c/{campaign.id}"
    served = httpx.get(link)
    assert served.status_code == 200
    tags = head(served.text).meta
    assert tags["og:title"] == campaign.title == tags["twitter:title"]
    assert tags["og:description"] == shortened(campaign.story)
    assert tags["twitter:description"] == tags["og:description"]
    assert tags["og:url"] == link
    image = f"{web_server.base_url}/media/{campaign.cover_hash}-1600.jpg"
    assert tags["og:image"] == image == tags["twitter:image"]
    assert tags["twitter:card"] == "summary_large_image"
    picture = httpx.get(image)
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/jpeg"

    shared = pages.open(f"c/{campaign.id}")
    assert shared.url == f"{web_server.base_url}/#/campaigns/{campaign.id}"
    expect(shared.get_by_role("heading", level=1)).to_have_text(campaign.title)
    shared.wait_for_function(COVER_LOADED)
    expect(shared.get_by_test_id("share-link")).to_have_value(link)
    expect(shared.get_by_test_id("money-paid-out")).to_have_text("$25.00")
    shot(shared, "journey-6-share-link-opened")


def test_a_campaign_from_its_start_to_the_money_reaching_the_hospital(
    pages: Pages, web_server: Server
) -> None:
    organiser, campaign = start_campaign(pages, web_server)
    donor = pages.open("#/")  # a guest, in a browser of their own
    admin = hidden_then_approved(pages, web_server, donor, campaign)
    find_and_give(donor, campaign)
    post_update(organiser, donor)
    record_payout(admin, donor, campaign)
    share_link(pages, web_server, campaign)

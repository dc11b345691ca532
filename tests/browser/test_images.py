"""Cover images and share links in a real browser: an organiser starts a
campaign with a photo and sees it on the page; a file that is not a photo is
refused with the server's words; a visitor opening the share link lands on
the campaign, copies the link and hands it to the device's share sheet."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from tests import factories as f
from tests.browser.conftest import Pages, shot
from tests.helpers.api import ServerGQL
from tests.helpers.browser import expect, sign_in
from tests.helpers.server import Server

pytestmark = [pytest.mark.server, pytest.mark.browser]

COVER_LOADED = """() => {
  const img = document.querySelector('[data-testid=cover-image]');
  return Boolean(img && img.complete && img.naturalWidth > 0);
}"""


def photo() -> bytes:
    image = Image.new("RGB", (1200, 700), (40, 110, 170))
    image.paste((240, 200, 60), (500, 200, 700, 500))
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


def test_an_organiser_starts_a_campaign_with_a_photo_and_shares_it(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    olive = f.register(api, name="Olive Organiser")
    page = pages.open("#/signin?next=/start")
    sign_in(page, olive.email, "correct horse")
    title = f.unique("New hip for Rosa")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Category").fill("surgery")
    page.get_by_label("Goal").fill("2000")
    page.get_by_label("The story").fill("Rosa cannot walk without a new hip.")
    page.get_by_label("Cover image (optional)").set_input_files(
        {"name": "rosa.jpg", "mimeType": "image/jpeg", "buffer": photo()}
    )
    page.get_by_role("button", name="Start the campaign").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    page.wait_for_function(COVER_LOADED)
    cover = page.get_by_test_id("cover-image")
    expect(cover).to_have_attribute(
        "src", re.compile(r"^/media/[0-9a-f]{32}-800\.jpg$")
    )
    campaign_id = re.search(r"#/campaigns/([^/?]+)$", page.url).group(1)  # type: ignore[union-attr]
    shot(page, "images-campaign-with-cover")

    # --- a file that is not a photo: the server says why, the image stays ---
    pages.allow(r"status of 400")
    first = cover.get_attribute("src")
    page.get_by_text("Cover image", exact=True).click()  # folded once there is one
    manage = page.locator(".image-form")
    manage.get_by_label("Photo").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}
    )
    manage.get_by_role("button", name="Change the image").click()
    expect(manage.get_by_role("alert")).to_contain_text("not an image we can read")
    expect(cover).to_have_attribute("src", first or "")
    shot(page, "images-refused-file")

    # --- a visitor follows the share link, copies it and shares it -----------
    visitor = pages.visitor()
    visitor.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=web_server.base_url
    )
    # The device's share sheet, recorded (headless Chromium has none).
    visitor.add_init_script(
        "navigator.share = async (data) => { window.sharedWith = data; };"
    )
    shared = pages.open(f"c/{campaign_id}", context=visitor)
    expect(shared.get_by_role("heading", level=1)).to_have_text(title)
    assert shared.url == f"{web_server.base_url}/#/campaigns/{campaign_id}"
    shared.wait_for_function(COVER_LOADED)
    link = f"{web_server.base_url}/c/{campaign_id}"
    expect(shared.get_by_test_id("share-link")).to_have_value(link)
    shared.get_by_role("button", name="Copy link").click()
    expect(shared.get_by_test_id("share-status")).to_have_text("Link copied.")
    assert shared.evaluate("navigator.clipboard.readText()") == link
    shared.get_by_role("button", name="Share", exact=True).click()
    shared.wait_for_function("() => Boolean(window.sharedWith)")
    assert shared.evaluate("window.sharedWith") == {"title": title, "url": link}
    shot(shared, "images-share-link-opened")

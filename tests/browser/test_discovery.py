"""Finding a campaign on the home page in a real browser: the search box
(debounced, its words in the link), category chips, the sort, and what an
empty result says."""

from __future__ import annotations

import re
import uuid

import pytest

from tests import factories as f
from tests.browser.conftest import PHONE, Pages, shot
from tests.helpers.api import ServerGQL
from tests.helpers.browser import expect

pytestmark = [pytest.mark.server, pytest.mark.browser]


def test_a_donor_finds_a_campaign_by_a_word_of_its_story_and_a_category_chip(
    pages: Pages, api: ServerGQL
) -> None:
    word = f"scoliosis{uuid.uuid4().hex[:8]}"
    category = f"spine{uuid.uuid4().hex[:6]}"
    organiser = f.register(api, name="Olive Organiser")
    wanted = f.campaign(
        api,
        organiser.token,
        title="A straight back for Mia",
        description=f"Mia needs {word} surgery before she turns twelve.",
        category=category,
    )
    other = f.campaign(
        api,
        organiser.token,
        title="Braces for Leo",
        description=f"Leo's {word} is mild: braces will do.",
    )

    page = pages.open("#/")
    box = page.get_by_label("Search campaigns")
    box.fill(word[:-3])  # a prefix is enough
    cards = page.locator(".cards .card h2")
    expect(cards).to_have_count(2)
    expect(page).to_have_url(re.compile(rf"#/\?q={word[:-3]}$"))
    shot(page, "home-search-results")

    page.locator(".chips").get_by_role("button", name=category).click()
    expect(cards).to_have_count(1)
    expect(cards).to_have_text([wanted["title"]])
    expect(page.locator(".chips .chip[aria-pressed=true]")).to_have_text(category)
    shot(page, "home-search-category-chip")

    # The link opens the same list, in another browser.
    again = pages.open("#" + page.url.split("#", 1)[1])
    expect(again.get_by_label("Search campaigns")).to_have_value(word[:-3])
    expect(again.locator(".cards .card h2")).to_have_text([wanted["title"]])
    phone = pages.open("#" + page.url.split("#", 1)[1], viewport=PHONE)
    expect(phone.locator(".cards .card h2")).to_have_text([wanted["title"]])
    shot(phone, "home-search-phone")

    page.locator(".chips").get_by_role("button", name="All", exact=True).click()
    page.get_by_label("Sort by").select_option("MOST_RAISED")
    expect(cards).to_have_count(2)
    expect(page).to_have_url(re.compile(r"sort=MOST_RAISED"))
    assert other["id"]

    box.fill('"*:( nothing-like-this')
    expect(page.locator(".list-status")).to_contain_text("No campaigns match")
    shot(page, "home-search-no-results")

"""Steps in a real browser (Playwright's sync API) that several pages' tests
take: signing in, donating, and Playwright's `expect`, imported when first
used so that a missing Playwright skips the tests instead of failing them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def sign_in(page: Page, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def donate(
    page: Page,
    *,
    amount: str | None = None,
    preset: str | None = None,
    name: str | None = None,
    message: str | None = None,
    declined: bool = False,
) -> None:
    """Fill the donate form and press its button (once)."""
    if preset:
        page.get_by_label(preset, exact=True).check()
    if amount:
        page.get_by_label("Other amount in USD").fill(amount)
    if name:
        page.get_by_label("Your name").fill(name)
    if message:
        page.get_by_label("A message for the family").fill(message)
    card = "Card that is declined" if declined else "Card that works"
    page.get_by_label(re.compile(card)).check()
    page.get_by_role("button", name=re.compile(r"^Donate")).click()

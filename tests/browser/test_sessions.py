"""Sessions in a real browser: signing out ends the token on the server, and a
guest's token that the server renews replaces the one the browser kept."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests import factories as f
from tests.browser.conftest import Pages
from tests.helpers.api import ServerGQL
from tests.helpers.browser import expect, sign_in
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = [pytest.mark.server, pytest.mark.browser]

ME = "query { me { id } }"


def kept_token(page: Page) -> str | None:
    raw = page.evaluate("localStorage.getItem('careforall.session')")
    if not raw:
        return None
    session: dict[str, Any] = json.loads(raw)
    token = session.get("token")
    return token if isinstance(token, str) else None


def test_signing_out_ends_the_token_on_the_server(pages: Pages, api: ServerGQL) -> None:
    donor = f.register(api, name="Dana Donor")
    page = pages.open("#/signin")
    sign_in(page, donor.email, "correct horse")
    token = kept_token(page)
    assert token is not None
    assert api.ok(ME, token=token)["me"] is not None
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    assert kept_token(page) is None
    # Not only forgotten by the browser: a copy of it no longer works.
    wait_until(lambda: "errors" in api(ME, token=token))
    assert api.code(ME, token=token) == "UNAUTHENTICATED"


def test_a_renewed_guest_token_replaces_the_kept_one(
    pages: Pages, api: ServerGQL
) -> None:
    before = f.anonymous(api)
    page = pages.open("#/")
    page.evaluate(
        "token => localStorage.setItem('careforall.session', JSON.stringify("
        "{token, anonymous: true, user: null}))",
        before,
    )
    renewed = "renewed-token-from-the-server"

    def hand_back_a_renewal(route: Route) -> None:
        response = route.fetch()
        route.fulfill(
            response=response,
            headers={**response.headers, "x-renewed-token": renewed},
        )

    page.route("**/graphql", hand_back_a_renewal)
    # Any request the app makes with the guest's token.
    page.goto(page.url.split("#")[0] + "#/donations")
    wait_until(lambda: kept_token(page) == renewed)
    page.unroute("**/graphql")

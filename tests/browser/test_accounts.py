"""Accounts in a real browser, with the mails on a real SMTP server: a
forgotten password reset by the mailed link, an address confirmed by its
link, the account settings page, and a guest's receipt mailed to the address
given on the donate form."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx
import pytest

from tests import factories as f
from tests.browser.conftest import Pages, shot
from tests.helpers.account_mails import token_in
from tests.helpers.api import ServerGQL
from tests.helpers.browser import donate, expect, sign_in
from tests.helpers.server import Server
from tests.helpers.smtp import MailServer, free_port
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.server, pytest.mark.browser]

PASSWORD = "correct horse"  # what tests.factories.register gives every account
ME = "query { me { id name email emailVerified } }"
LOGIN = (
    "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
)
ORG_NAME = "Hope & Care Foundation"
ORG_ADDRESS = "1 Harbour Road, Springfield"
ORG_TAX_ID = "EIN 12-3456789"
POST_UPDATE = """mutation($id: ID!) {
  postCampaignUpdate(campaignId: $id, title: "The x-ray is done",
                     body: "Thank you all.") { id }
}"""
PREFERENCES = "query { mailPreferences { donationDigest goalReached campaignUpdates } }"


@pytest.fixture(scope="module")
def smtp() -> Iterator[MailServer]:
    server = MailServer(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mail_web_server(
    browser: Browser,
    smtp: MailServer,
    tmp_path_factory: pytest.TempPathFactory,
    template_db: Path,
) -> Iterator[Server]:
    """A server that mails through `smtp`, its links leading back to itself.

    On SQLite only: these pages' database work (tokens, preferences, the
    account's deletion) is tested on both databases in tests/api and
    tests/services; here it is the pages and the mails' links."""
    workdir = tmp_path_factory.mktemp("account-server")
    db_path = workdir / "careforall.db"
    shutil.copy(template_db, db_path)
    server = Server(
        workdir,
        db_path,
        CAREFORALL_SMTP_URL=f"smtp://127.0.0.1:{smtp.port}",
        CAREFORALL_ORG_NAME=ORG_NAME,
        CAREFORALL_ORG_ADDRESS=ORG_ADDRESS,
        CAREFORALL_ORG_TAX_ID=ORG_TAX_ID,
    )
    server.env["CAREFORALL_PUBLIC_URL"] = server.base_url
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def site(browser: Browser, mail_web_server: Server) -> Iterator[Pages]:
    opened = Pages(browser=browser, base_url=mail_web_server.base_url)
    yield opened
    opened.close()
    assert not opened.errors, "errors in the browser console:\n" + "\n".join(
        opened.errors
    )


@pytest.fixture
def gql(mail_web_server: Server) -> Iterator[ServerGQL]:
    with httpx.Client(base_url=mail_web_server.base_url, timeout=10.0) as client:
        yield ServerGQL(client)


def mail_to(smtp: MailServer, address: str, subject: str) -> EmailMessage:
    """The newest mail to `address` whose subject holds `subject`."""

    def found() -> list[EmailMessage]:
        return [
            m
            for m in smtp.messages
            if m["To"] == address and subject in str(m["Subject"]).lower()
        ]

    try:
        wait_until(found, timeout=20, what=f"a '{subject}' mail to {address}")
    except AssertionError as error:
        seen = [(m["To"], m["Subject"]) for m in smtp.messages]
        raise AssertionError(f"{error}; the mails received: {seen}") from None
    return found()[-1]


def link_in(message: EmailMessage, path: str, server: Server) -> str:
    """The mail's link to `path`, on the server's public address."""
    body = message.get_body(("plain",))
    assert body is not None
    token = token_in(body.get_content(), path)
    assert f"{server.base_url}{path}?token=" in body.get_content()
    return f"{server.base_url}{path}?{urlencode({'token': token})}"


def open_link(site: Pages, url: str) -> Page:
    """Open a mailed link as a person would: a fresh visitor, the full URL."""
    page = site.visitor().new_page()
    page.on("pageerror", lambda error: site.errors.append(f"uncaught {error}"))
    page.goto(url)
    page.wait_for_selector("main:not([aria-busy])")
    site.pages.append(page)
    return page


def test_a_forgotten_password_is_reset_by_the_mailed_link(
    site: Pages, gql: ServerGQL, smtp: MailServer, mail_web_server: Server
) -> None:
    donor = f.register(gql, name="Fern Forgetful")
    page = site.open("#/signin")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_focused()
    page.get_by_label("Email").fill(donor.email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("status")).to_contain_text(
        "If an account exists for that address, we have sent a link"
    )
    shot(page, "account-forgot-password")

    link = link_in(
        mail_to(smtp, donor.email, "password"), "/reset-password", mail_web_server
    )
    reset = open_link(site, link)
    expect(reset.get_by_role("heading", name="Choose a new password")).to_be_visible()
    assert "token" not in reset.url  # out of the address bar and the history
    reset.get_by_label("New password").fill("a brand new secret")
    reset.get_by_role("button", name="Save my new password").click()
    expect(reset.get_by_role("button", name="Sign out")).to_be_visible()
    expect(reset.get_by_text("Your password is changed")).to_be_visible()

    # The old password and every earlier token are refused; the new one works.
    assert gql.code(LOGIN, {"e": donor.email, "p": PASSWORD}) == "UNAUTHENTICATED"
    assert gql.code(ME, token=donor.token) == "UNAUTHENTICATED"
    assert gql.ok(LOGIN, {"e": donor.email, "p": "a brand new secret"})["login"]
    again = site.visitor().new_page()
    again.goto("/#/signin")
    again.get_by_label("Email").fill(donor.email)
    again.get_by_label("Password").fill(PASSWORD)
    again.get_by_role("button", name="Sign in").click()
    expect(again.get_by_role("alert")).to_be_visible()
    site.pages.append(again)

    # The link works once (nothing tells before a password is sent with it).
    used = open_link(site, link)
    used.get_by_label("New password").fill("yet another secret")
    used.get_by_role("button", name="Save my new password").click()
    expect(used.get_by_role("alert")).to_contain_text("This link has expired")
    used.get_by_role("link", name="Ask for a new link").click()
    expect(used.get_by_role("heading", name="Forgot your password?")).to_be_visible()


def test_an_address_is_confirmed_by_the_mailed_link(
    site: Pages, gql: ServerGQL, smtp: MailServer, mail_web_server: Server
) -> None:
    donor = f.register(gql, name="Vera Verify")
    page = site.open("#/signin")
    sign_in(page, donor.email, PASSWORD)
    banner = page.get_by_test_id("verify-banner")
    expect(banner).to_contain_text("Please confirm your email address")
    sent = len(smtp.messages)
    banner.get_by_role("button", name="Send the link again").click()
    expect(banner.get_by_role("status")).to_contain_text(f"new link to {donor.email}")
    wait_until(lambda: len(smtp.messages) > sent, timeout=20, what="the new link")
    shot(page, "account-verify-banner")

    link = link_in(
        mail_to(smtp, donor.email, "confirm"), "/verify-email", mail_web_server
    )
    page.goto(link)
    expect(page.get_by_role("heading", name="Email address confirmed")).to_be_visible()
    assert "token" not in page.url
    expect(banner).to_be_hidden()
    assert gql.ok(ME, token=donor.token)["me"]["emailVerified"] is True


def test_account_settings_change_mail_choices_and_name_and_delete_the_account(
    site: Pages, gql: ServerGQL, tmp_path: Path
) -> None:
    donor = f.register(gql, name="Sam Settings")
    page = site.open("#/signin")
    sign_in(page, donor.email, PASSWORD)
    page.get_by_role("link", name="Account").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_focused()

    updates = page.get_by_label("Updates from campaigns I gave to")
    expect(updates).to_be_checked()
    updates.uncheck()
    page.get_by_role("button", name="Save mail choices").click()
    expect(page.get_by_text("Mail choices saved.")).to_be_visible()
    prefs = gql.ok(PREFERENCES, token=donor.token)["mailPreferences"]
    assert prefs == {
        "donationDigest": True,
        "goalReached": True,
        "campaignUpdates": False,
    }

    page.get_by_label("Your name").fill("Samira Settings")
    page.get_by_role("button", name="Save name and email").click()
    profile = page.get_by_role("region", name="Name and email")
    expect(profile.get_by_role("status")).to_have_text("Saved.")
    expect(page.locator(".who")).to_have_text("Signed in as Samira Settings")

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill("another long secret")
    page.get_by_role("button", name="Change password").click()
    password = page.get_by_role("region", name="Password", exact=True)
    expect(password.get_by_role("status")).to_contain_text("Password changed")
    assert gql.code(ME, token=donor.token) == "UNAUTHENTICATED"

    new_address = f"{f.unique('moved')}@example.org"
    page.get_by_label("Email", exact=True).fill(new_address)
    page.get_by_role("button", name="Save name and email").click()
    expect(profile.get_by_role("status")).to_contain_text(
        f"We sent a link to {new_address}"
    )
    expect(page.get_by_test_id("verify-banner")).to_contain_text(new_address)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download my data").click()
    assert download.value.suggested_filename == "careforall-my-data.json"
    saved = tmp_path / "data.json"
    download.value.save_as(saved)
    assert new_address in saved.read_text()
    json.loads(saved.read_text())
    shot(page, "account-settings")

    page.get_by_label("Your password, to confirm").fill("not my password")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.locator("#account-delete-password-error")).not_to_be_empty()
    page.get_by_label("Your password, to confirm").fill("another long secret")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_text("Your account is deleted.")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    assert gql.code(ME, token=donor.token) == "UNAUTHENTICATED"
    assert gql.code(LOGIN, {"e": new_address, "p": "another long secret"}) == (
        "UNAUTHENTICATED"
    )


def test_signing_out_everywhere_ends_the_other_devices_sessions(
    site: Pages, gql: ServerGQL
) -> None:
    donor = f.register(gql, name="Dev Ices")
    page = site.open("#/signin")
    sign_in(page, donor.email, PASSWORD)
    page.goto("/#/account")
    page.get_by_role("button", name="Sign out everywhere").click()
    expect(page.get_by_text("You are signed out on every device.")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    assert gql.code(ME, token=donor.token) == "UNAUTHENTICATED"


def test_a_guest_gets_the_receipt_at_the_address_given_on_the_donate_form(
    site: Pages, gql: ServerGQL, smtp: MailServer
) -> None:
    organiser = f.register(gql, name="Olive Organiser")
    campaign = f.campaign(gql, organiser.token, title=f.unique("Braces for"))
    page = site.open(f"#/campaigns/{campaign['id']}")
    receipt_to = f"{f.unique('guest')}@example.org"
    email = page.get_by_label("Email for your receipt")
    updates = page.get_by_label("Email me this campaign's updates")
    # A guest is offered updates by mail once there is an address for them.
    expect(updates).to_be_hidden()
    email.fill("not an address")
    donate(page, preset="$25.00")
    expect(
        page.locator(".field-error").filter(has_text="Enter an email")
    ).to_be_visible()
    expect(email).to_be_focused()
    shot(page, "donate-receipt-address-refused")
    email.fill(receipt_to)
    expect(updates).to_be_visible()
    expect(updates).not_to_be_checked()
    updates.check()
    shot(page, "donate-campaign-updates")
    page.get_by_role("button", name=re.compile(r"^Donate")).click()
    expect(page.get_by_test_id("pledge-status")).to_have_attribute(
        "data-status", "CAPTURED"
    )
    message = mail_to(smtp, receipt_to, "receipt")
    body = message.get_body(("plain",))
    assert body is not None
    assert "$25.00" in body.get_content()
    assert campaign["title"] in body.get_content()

    # The printable receipt page shows what the mailed receipt says.
    mailed = dict(
        re.findall(
            r"^(Receipt number|Date|Payment reference): +(.+)$",
            body.get_content(),
            flags=re.MULTILINE,
        )
    )
    page.goto(f"/#/donations/{mailed['Payment reference']}")
    receipt = page.locator("article.receipt")
    expect(receipt.get_by_test_id("receipt-number")).to_have_text(
        f"Receipt number {mailed['Receipt number']}"
    )
    expect(receipt.get_by_test_id("receipt-amount")).to_have_text("$25.00")
    expect(receipt.get_by_test_id("receipt-date")).to_have_text(mailed["Date"])
    expect(receipt.get_by_test_id("receipt-reference")).to_have_text(
        mailed["Payment reference"]
    )
    expect(receipt).to_contain_text(campaign["title"])
    expect(receipt.get_by_test_id("receipt-org-name")).to_have_text(ORG_NAME)
    org = receipt.get_by_test_id("receipt-org")
    for shown in (ORG_NAME, ORG_ADDRESS, f"Tax id: {ORG_TAX_ID}"):
        expect(org).to_contain_text(shown)
        assert shown in body.get_content()
    shot(page, "receipt-as-mailed")

    # A signed-in donor's receipt goes to the account: no such field.
    donor = f.register(gql)
    signed_in = site.open("#/signin")
    sign_in(signed_in, donor.email, PASSWORD)
    signed_in.goto(f"/#/campaigns/{campaign['id']}")
    expect(signed_in.get_by_role("heading", name="Donate")).to_be_visible()
    expect(signed_in.get_by_label("Email for your receipt")).to_have_count(0)
    signed_in_updates = signed_in.get_by_label("Email me this campaign's updates")
    expect(signed_in_updates).to_be_visible()
    expect(signed_in_updates).not_to_be_checked()

    # The organiser posts an update: the guest who asked gets it by mail, and
    # its unsubscribe link works without an account.
    gql.ok(POST_UPDATE, {"id": campaign["id"]}, organiser.token)
    update = mail_to(smtp, receipt_to, "the x-ray is done")
    update_text = update.get_body(("plain",))
    assert update_text is not None and "Thank you all." in update_text.get_content()
    link = update["List-Unsubscribe"].strip("<>")
    assert link.startswith(f"{site.base_url}/unsubscribe?token=")
    confirm = site.visitor().new_page()
    site.pages.append(confirm)
    confirm.goto(link)
    expect(
        confirm.get_by_text("Stop receiving this campaign's updates?")
    ).to_be_visible()
    confirm.get_by_role("button", name="Unsubscribe").click()
    expect(confirm.get_by_role("heading", name="Unsubscribed")).to_be_visible()

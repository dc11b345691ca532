"""Admins in a real browser: the admin page, a refund that lowers a campaign's
total (live, on another open page), reconcile and the CSV export; donors and
guests who open the admin page see a message, and nothing admin is requested."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from typing import TYPE_CHECKING

import pytest

from tests import factories as f
from tests.browser.conftest import Pages, shot
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD, ServerGQL
from tests.helpers.browser import expect, sign_in
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request

pytestmark = [pytest.mark.server, pytest.mark.browser]

ADMIN_OPERATIONS = re.compile(
    r"adminStats|adminPledges|deadLetters|webhookLog|auditLog|reconcileTotals"
    r"|replayDeadLetter|replayAllDeadLetters|refundPayment|capturePayment"
)
ONLY_ADMINS = "Only admins can see this page"


def captured_pledge(api: ServerGQL, campaign_id: str, amount: int) -> str:
    donor = f.register(api, name="Dora Donor")
    pledge = f.pledge(api, donor.token, campaign_id, amount)
    api.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    pledge_id: str = pledge["id"]
    return pledge_id


def record_requests(page: Page) -> list[str]:
    """What the page asks the server: GraphQL bodies and export URLs."""
    sent: list[str] = []

    def on_request(request: Request) -> None:
        if "/graphql" in request.url or "/admin/" in request.url:
            sent.append(f"{request.url} {request.post_data or ''}")

    page.on("request", on_request)
    return sent


def test_an_admin_refunds_a_donation_and_the_campaign_total_falls(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    organiser = f.register(api, name="Olive Organiser")
    campaign = f.campaign(api, organiser.token, title=f.unique("A kidney for"))
    refunded = captured_pledge(api, campaign["id"], 3000)
    kept = captured_pledge(api, campaign["id"], 2000)
    wait_until(lambda: f.totals(api, campaign["id"]) == (5000, 2))

    watcher = pages.open(f"#/campaigns/{campaign['id']}")
    expect(watcher.get_by_test_id("live-status")).to_have_text(re.compile("^Live"))
    expect(watcher.get_by_test_id("raised")).to_have_text("$50.00")

    page = pages.open("#/signin?next=/admin")
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Admin", exact=True)).to_be_visible()
    expect(page.get_by_test_id("raised-total")).to_be_visible()
    expect(page.get_by_test_id("admin-dead-letters")).to_be_visible()
    expect(page.get_by_test_id("admin-webhooks")).to_be_visible()
    expect(page.get_by_test_id("admin-stuck")).to_be_visible()
    shot(page, "admin")

    row = page.locator(f"tr[data-pledge-id='{refunded}']")
    expect(row).to_contain_text("$30.00")
    expect(row).to_contain_text(campaign["title"])
    row.get_by_role("button", name=re.compile(r"^Refund \$30\.00")).click()
    expect(row.get_by_role("alert")).to_contain_text("Refund $30.00")
    shot(page, "admin-refund-confirm")
    # Asking is not refunding.
    assert f.totals(api, campaign["id"]) == (5000, 2)
    row.get_by_role("button", name="Refund now").click()
    expect(row.get_by_role("status")).to_contain_text("Refunded $30.00")
    shot(page, "admin-refunded")

    # The campaign page that was open all along shows the lower total by itself.
    expect(watcher.get_by_test_id("raised")).to_have_text("$20.00")
    wait_until(lambda: f.totals(api, campaign["id"]) == (2000, 1))
    states = dict(
        web_server.query(
            "SELECT id, status FROM pledges WHERE campaign_id = ?", (campaign["id"],)
        )
    )
    assert states == {refunded: "REFUNDED", kept: "CAPTURED"}

    # Totals agree with the pledges, so reconcile finds nothing to repair.
    wait_until(web_server.settled)
    page.get_by_role("button", name="Reconcile totals").click()
    expect(page.get_by_test_id("admin-reconcile")).to_contain_text("Nothing drifted")

    # The export sends the admin's token and hands the file over as a download.
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download donations (CSV)").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    csv_text = download.path().read_text(encoding="utf-8-sig")
    refunded_line = next(line for line in csv_text.splitlines() if refunded in line)
    assert "REFUNDED" in refunded_line
    shot(page, "admin-after-reconcile-and-export")


def test_a_donor_and_a_guest_cannot_reach_the_admin_page(
    pages: Pages, api: ServerGQL
) -> None:
    # A guest: the message, no admin link, no admin request.
    guest = pages.open("#/")
    guest_sent = record_requests(guest)
    guest.goto("/#/admin")
    guest.wait_for_selector("main:not([aria-busy])")
    expect(guest.get_by_role("main")).to_contain_text(ONLY_ADMINS)
    expect(guest.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    shot(guest, "admin-as-guest")

    # A signed-in donor: the same.
    donor = f.register(api, name="Nora Nonadmin")
    page = pages.open("#/signin?next=/admin")
    sent = record_requests(page)
    sign_in(page, donor.email, "correct horse")
    expect(page.get_by_role("main")).to_contain_text(ONLY_ADMINS)
    expect(page.get_by_role("main")).to_contain_text("not an admin account")
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    shot(page, "admin-as-donor")

    # A browser that claims the donor is an admin is not believed: the server
    # is asked who this is, and still nothing admin is requested.
    page.evaluate(
        """() => {
          const s = JSON.parse(localStorage.getItem('careforall.session'));
          s.user.role = 'ADMIN';
          localStorage.setItem('careforall.session', JSON.stringify(s));
        }"""
    )
    page.reload()
    page.wait_for_selector("main:not([aria-busy])")
    expect(page.get_by_role("main")).to_contain_text(ONLY_ADMINS)
    assert any("query Me" in body for body in sent)

    for body in guest_sent + sent:
        assert not ADMIN_OPERATIONS.search(body), body
        assert "/admin/export" not in body, body
    # The API agrees: this donor is no admin.
    assert (
        api.code("query { adminStats { outboxPending } }", token=donor.token)
        == "FORBIDDEN"
    )


def park_as_dead_letter(server: Server, pledge_id: str) -> int:
    """Park a copy of the pledge's CAPTURED event, as the dispatcher does after
    its last failed try (written into the server's file beside it: WAL)."""
    with closing(sqlite3.connect(server.db_path, timeout=5)) as conn, conn:
        rows = conn.execute(
            "SELECT payload, created_at, available_at FROM outbox_events "
            "WHERE name = 'PledgeStatusChanged'"
        ).fetchall()
        payload, created, available = next(
            row
            for row in rows
            if json.loads(row[0])["pledge_id"] == pledge_id
            and json.loads(row[0])["to_status"] == "CAPTURED"
        )
        cursor = conn.execute(
            "INSERT INTO outbox_events (name, payload, status, attempts, last_error,"
            " created_at, available_at) VALUES ('PledgeStatusChanged', ?, 'dead', 8,"
            " 'OperationalError: database is locked', ?, ?)",
            (payload, created, available),
        )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def test_an_admin_replays_a_dead_letter_by_clicking(
    pages: Pages, api: ServerGQL, web_server: Server
) -> None:
    organiser = f.register(api, name="Olive Organiser")
    campaign = f.campaign(api, organiser.token, title=f.unique("A hearing aid for"))
    pledge_id = captured_pledge(api, campaign["id"], 4200)
    wait_until(lambda: f.totals(api, campaign["id"]) == (4200, 1))
    wait_until(web_server.settled)
    dead = park_as_dead_letter(web_server, pledge_id)
    notes_before = web_server.scalar("SELECT count(*) FROM notifications")

    page = pages.open("#/signin?next=/admin")
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    letters = page.get_by_test_id("admin-dead-letters")
    expect(letters).to_contain_text("OperationalError: database is locked")
    expect(page.get_by_test_id("dead-letter-count")).to_have_text(re.compile(r"[1-9]"))
    shot(page, "admin-dead-letter")

    letters.get_by_role(
        "button", name=f"Replay event {dead} (PledgeStatusChanged)"
    ).click()
    expect(letters.get_by_role("status")).to_contain_text(
        f"Event {dead}: 1 event sent for delivery again."
    )
    expect(
        letters.get_by_role("button", name=f"Replay event {dead} (PledgeStatusChanged)")
    ).to_have_count(0)
    shot(page, "admin-dead-letter-replayed")

    # Delivered this time, and its effect happened once: the handlers are
    # idempotent, so neither the total nor anybody's notifications moved.
    wait_until(
        lambda: (
            web_server.scalar("SELECT status FROM outbox_events WHERE id = ?", (dead,))
            == "done"
        )
    )
    assert f.totals(api, campaign["id"]) == (4200, 1)
    assert web_server.scalar("SELECT count(*) FROM notifications") == notes_before
    audit = web_server.query(
        "SELECT action, target_id FROM audit_log WHERE target_id = ?", (str(dead),)
    )
    assert audit == [("replay_dead_letter", str(dead))]

"""The campaign page's proof: the organiser's updates (newest first), the
payouts admins record (never more than the campaign holds) beside raised,
refunded, paid out and held, and reports that reach the admins."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import col, select
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.models import AuditLog, OutboxEvent
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until

POST = """
mutation($id: ID!, $title: String!, $body: String!) {
  postCampaignUpdate(campaignId: $id, title: $title, body: $body) {
    id title body createdAt
  }
}"""
UPDATES = """
query($id: ID!, $first: Int, $after: String) {
  campaign(id: $id) {
    updates(first: $first, after: $after) {
      edges { cursor node { id title body } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""
PAYOUT = """
mutation($id: ID!, $amount: Int!, $recipient: String!, $ref: String!,
         $paidAt: DateTime) {
  recordPayout(campaignId: $id, amountCents: $amount, recipient: $recipient,
               reference: $ref, paidAt: $paidAt) {
    id amountCents currency recipient reference paidAt
  }
}"""
MONEY = """
query($id: ID!) {
  campaign(id: $id) {
    paidOutCents refundedCents heldCents totals { raisedCents }
    payouts { amountCents recipient reference paidAt }
  }
}"""
REPORT = (
    "mutation($id: ID!, $reason: String!) { reportCampaign(id: $id, reason: $reason) }"
)
REPORTS = """
query($id: ID) {
  adminReports(campaignId: $id, first: 50) {
    edges { node { campaignId reason reporter createdAt } }
  }
}"""
QUEUE = """
{ adminReviewQueue(first: 50) { edges { node {
    campaign { id } reportCount organiserReportCount } } } }"""


def paid(gql: GQL, token: str, campaign_id: str, amount: int) -> str:
    """A captured pledge (auto-capture)."""
    pledge_id: str = f.pledge(gql, token, campaign_id, amount)["id"]
    gql.ok(f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, token)
    return pledge_id


def money(gql: GQL, campaign_id: str) -> dict[str, Any]:
    result: dict[str, Any] = gql.ok(MONEY, {"id": campaign_id})["campaign"]
    return result


# --- updates ----------------------------------------------------------------------


def test_an_organisers_updates_show_newest_first_page_by_page(
    gql: GQL, db: Database
) -> None:
    organiser = f.register(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    posted = [
        gql.ok(
            POST, {"id": cid, "title": f" Day {n} ", "body": "News"}, organiser.token
        )
        for n in range(3)
    ]
    assert posted[0]["postCampaignUpdate"]["title"] == "Day 0"

    first = gql.ok(UPDATES, {"id": cid, "first": 2})["campaign"]["updates"]
    assert [e["node"]["title"] for e in first["edges"]] == ["Day 2", "Day 1"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = gql.ok(
        UPDATES, {"id": cid, "first": 2, "after": first["pageInfo"]["endCursor"]}
    )
    assert [e["node"]["title"] for e in rest["campaign"]["updates"]["edges"]] == [
        "Day 0"
    ]
    with db.read() as session:
        events = session.exec(
            select(OutboxEvent).where(OutboxEvent.name == "CampaignUpdatePosted")
        ).all()
    ids = {p["postCampaignUpdate"]["id"] for p in posted}
    assert {e.payload for e in events} >= {
        f'{{"campaign_id":"{cid}","update_id":"{i}"}}' for i in ids
    }


def test_only_the_organiser_posts_and_bad_updates_are_refused(gql: GQL) -> None:
    organiser, other, admin = f.register(gql), f.register(gql), f.admin(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    ok = {"id": cid, "title": "T", "body": "B"}
    assert gql.code(POST, ok, other.token) == "FORBIDDEN"
    assert gql.code(POST, ok, admin.token) == "FORBIDDEN"
    assert gql.code(POST, ok, f.anonymous(gql)) == "UNAUTHENTICATED"
    assert gql.code(POST, ok | {"id": "cmp_nope"}, organiser.token) == "NOT_FOUND"
    assert gql.code(POST, ok | {"title": " "}, organiser.token) == "BAD_USER_INPUT"
    assert gql.code(POST, ok | {"title": "t" * 201}, organiser.token) == (
        "BAD_USER_INPUT"
    )
    assert gql.code(POST, ok | {"body": ""}, organiser.token) == "BAD_USER_INPUT"
    assert gql.ok(UPDATES, {"id": cid})["campaign"]["updates"]["edges"] == []


def test_updates_are_rate_limited_per_organiser(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(rate_limits=True))
    organiser = f.register(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    for n in range(10):
        gql.ok(POST, {"id": cid, "title": f"{n}", "body": "B"}, organiser.token)
    code = gql.code(POST, {"id": cid, "title": "11", "body": "B"}, organiser.token)
    assert code == "RATE_LIMITED"


# --- payouts ----------------------------------------------------------------------


def test_payouts_add_up_to_at_most_what_was_raised_net_of_refunds(
    gql: GQL, db: Database
) -> None:
    organiser, donor, admin = f.register(gql), f.register(gql), f.admin(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    paid(gql, donor.token, cid, 50_000)
    refunded = paid(gql, donor.token, cid, 20_000)
    wait_until(lambda: f.totals(gql, cid)[0] == 70_000)
    gql.ok(f.REFUND, {"id": refunded}, admin.token)
    wait_until(lambda: f.totals(gql, cid)[0] == 50_000)

    when = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    body = {"id": cid, "recipient": " City Hospital ", "ref": "INV-1"}
    first = gql.ok(
        PAYOUT, body | {"amount": 30_000, "paidAt": when.isoformat()}, admin.token
    )
    assert first["recordPayout"] | {"id": None} == {
        "id": None,
        "amountCents": 30_000,
        "currency": "USD",
        "recipient": "City Hospital",
        "reference": "INV-1",
        "paidAt": when.isoformat(),
    }
    # 20,000 is held: more is refused, and nothing changes.
    for bad in (20_001, 0, -5):
        assert gql.code(PAYOUT, body | {"amount": bad}, admin.token) == "BAD_USER_INPUT"
    later = datetime.now(UTC) + timedelta(days=3)
    future = body | {"amount": 1, "paidAt": later.isoformat()}
    assert gql.code(PAYOUT, future, admin.token) == "BAD_USER_INPUT"
    assert gql.code(PAYOUT, body | {"amount": 1, "recipient": ""}, admin.token) == (
        "BAD_USER_INPUT"
    )
    gql.ok(PAYOUT, body | {"amount": 20_000, "ref": "INV-2"}, admin.token)

    page = money(gql, cid)
    assert page["totals"]["raisedCents"] == 50_000
    assert (page["paidOutCents"], page["refundedCents"], page["heldCents"]) == (
        50_000,
        20_000,
        0,
    )
    assert [p["reference"] for p in page["payouts"]] == ["INV-2", "INV-1"]
    assert gql.code(PAYOUT, body | {"amount": 1}, admin.token) == "BAD_USER_INPUT"
    with db.read() as session:
        audited = session.exec(
            select(AuditLog).where(
                AuditLog.action == "record_payout", AuditLog.target_id == cid
            )
        ).all()
    assert len(audited) == 2


def test_only_admins_record_payouts(gql: GQL) -> None:
    organiser, donor = f.register(gql), f.register(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    paid(gql, donor.token, cid, 10_000)
    body = {"id": cid, "amount": 100, "recipient": "Me", "ref": "R"}
    assert gql.code(PAYOUT, body, organiser.token) == "FORBIDDEN"
    assert gql.code(PAYOUT, body) == "UNAUTHENTICATED"
    assert money(gql, cid)["paidOutCents"] == 0


# --- reports ----------------------------------------------------------------------


def test_anyone_with_a_token_reports_and_the_admins_see_it(gql: GQL) -> None:
    organiser, donor, admin = f.register(gql), f.register(gql), f.admin(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    guest = f.anonymous(gql)
    assert gql.ok(REPORT, {"id": cid, "reason": " Fake photos "}, guest)[
        "reportCampaign"
    ]
    reports = gql.ok(REPORTS, {"id": cid}, admin.token)["adminReports"]["edges"]
    assert [(r["node"]["reason"], r["node"]["reporter"][:5]) for r in reports] == [
        ("Fake photos", "anon:")
    ]
    assert gql.code(REPORT, {"id": cid, "reason": "x"}) == "UNAUTHENTICATED"
    assert gql.code(REPORT, {"id": cid, "reason": " "}, donor.token) == "BAD_USER_INPUT"
    assert gql.code(REPORT, {"id": cid, "reason": "x" * 1001}, donor.token) == (
        "BAD_USER_INPUT"
    )
    assert gql.code(REPORT, {"id": "cmp_nope", "reason": "x"}, donor.token) == (
        "NOT_FOUND"
    )
    assert gql.code(REPORTS, {"id": cid}, donor.token) == "FORBIDDEN"


def test_repeated_reports_from_one_address_are_limited(gql: GQL) -> None:
    organiser, admin = f.register(gql), f.admin(gql)
    cids = [f.campaign(gql, organiser.token)["id"] for _ in range(11)]
    # Another session from the same address cannot report the same campaign.
    gql.ok(REPORT, {"id": cids[0], "reason": "Scam"}, f.anonymous(gql))
    again = gql.code(REPORT, {"id": cids[0], "reason": "Scam!"}, f.anonymous(gql))
    assert again == "RATE_LIMITED"
    for cid in cids[1:10]:
        gql.ok(REPORT, {"id": cid, "reason": "Scam"}, f.anonymous(gql))
    assert gql.code(REPORT, {"id": cids[10], "reason": "Scam"}, f.anonymous(gql)) == (
        "RATE_LIMITED"
    )
    edges = gql.ok(REPORTS, {"id": None}, admin.token)["adminReports"]["edges"]
    assert len([e for e in edges if e["node"]["campaignId"] in cids]) == 10


def test_reports_reach_the_review_queue(app_factory: Callable[..., TestClient]) -> None:
    gql = GQL(app_factory(campaign_review="required"))
    organiser, admin = f.register(gql), f.admin(gql)
    live = f.campaign(gql, organiser.token)["id"]
    gql.ok(
        "mutation($id: ID!) { reviewCampaign(id: $id, approve: true) { id } }",
        {"id": live},
        admin.token,
    )
    gql.ok(
        REPORT, {"id": live, "reason": "Seen this story elsewhere"}, f.anonymous(gql)
    )
    waiting = f.campaign(gql, organiser.token)["id"]
    # The public cannot report what it cannot see.
    assert gql.code(REPORT, {"id": waiting, "reason": "x"}, f.anonymous(gql)) == (
        "NOT_FOUND"
    )
    entries = gql.ok(QUEUE, token=admin.token)["adminReviewQueue"]["edges"]
    (entry,) = [e["node"] for e in entries if e["node"]["campaign"]["id"] == waiting]
    assert (entry["reportCount"], entry["organiserReportCount"]) == (0, 1)


def test_events_name_what_happened(gql: GQL, db: Database) -> None:
    organiser, admin, donor = f.register(gql), f.admin(gql), f.register(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    paid(gql, donor.token, cid, 1_000)
    wait_until(lambda: f.totals(gql, cid)[0] == 1_000)
    gql.ok(
        PAYOUT, {"id": cid, "amount": 500, "recipient": "H", "ref": "R"}, admin.token
    )
    gql.ok(REPORT, {"id": cid, "reason": "why"}, donor.token)
    with db.read() as session:
        names = set(
            session.exec(
                select(OutboxEvent.name).where(col(OutboxEvent.payload).contains(cid))
            ).all()
        )
    assert {"PayoutRecorded", "CampaignReported"} <= names

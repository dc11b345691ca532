"""Review: with CAREFORALL_CAMPAIGN_REVIEW=required a new campaign waits
IN_REVIEW, hidden from the public and taking no pledges, until an admin
approves or rejects it; admins suspend live campaigns with a public note;
the organiser is told each time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from careforall.settings import Settings
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until

CAMPAIGN = """
query($id: ID!) {
  campaign(id: $id) { id status reviewNote suspensionNote acceptingPledges }
}"""
LIST = "{ campaigns(first: 100) { edges { node { id } } } }"
REVIEW = """
mutation($id: ID!, $approve: Boolean!, $note: String) {
  reviewCampaign(id: $id, approve: $approve, note: $note) { id status reviewNote }
}"""
SUSPEND = """
mutation($id: ID!, $note: String!) {
  suspendCampaign(id: $id, note: $note) { id status reviewNote suspensionNote }
}"""
SET_STATUS = """
mutation($id: ID!, $status: CampaignStatus!) {
  setCampaignStatus(id: $id, status: $status) { id status }
}"""
QUEUE = """
query($first: Int, $after: String) {
  adminReviewQueue(first: $first, after: $after) {
    edges { cursor node {
      campaign { id title status }
      reportCount organiserReportCount
      organiserCampaigns { id title status }
    } }
    pageInfo { hasNextPage endCursor }
  }
}"""
FEED = """
{ notifications(first: 50) { edges { node { kind title body campaignId } } } }"""


@pytest.fixture
def gql(app_factory: Callable[..., TestClient]) -> GQL:
    """An app that holds new campaigns for review."""
    return GQL(app_factory(campaign_review="required"))


def listed(gql: GQL, token: str | None = None) -> set[str]:
    data = gql.ok(LIST, token=token)["campaigns"]["edges"]
    return {edge["node"]["id"] for edge in data}


def seen(gql: GQL, campaign_id: str, token: str | None = None) -> Any:
    return gql.ok(CAMPAIGN, {"id": campaign_id}, token)["campaign"]


def kinds_told(gql: GQL, token: str, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        edges = gql.ok(FEED, token=token)["notifications"]["edges"]
        return [e["node"] for e in edges] if len(edges) >= count else None

    found: list[dict[str, Any]] = wait_until(enough)
    return found


def test_review_is_required_by_default_and_can_be_turned_off() -> None:
    assert Settings().review_required
    assert Settings.from_env({}).campaign_review == "required"
    off = Settings.from_env({"CAREFORALL_CAMPAIGN_REVIEW": "OFF"})
    assert not off.review_required


def test_a_new_campaign_waits_hidden_from_the_public(gql: GQL) -> None:
    organiser, donor, admin = f.register(gql), f.register(gql), f.admin(gql)
    made = f.campaign(gql, organiser.token)
    assert (made["status"], made["acceptingPledges"]) == ("IN_REVIEW", False)
    cid = made["id"]

    # The public (and anyone but its organiser and admins): as a missing one,
    # and never listed. Asked first, the answer must not be kept for others.
    assert seen(gql, cid) is None
    assert seen(gql, cid, donor.token) is None
    assert seen(gql, cid, organiser.token)["status"] == "IN_REVIEW"
    assert seen(gql, cid, admin.token)["status"] == "IN_REVIEW"
    assert cid not in listed(gql) | listed(gql, organiser.token)
    # It takes no pledges.
    code = gql.code(
        f.CREATE_PLEDGE,
        {"input": {"campaignId": cid, "amountCents": 500, "idempotencyKey": "k1"}},
        donor.token,
    )
    assert code == "CAMPAIGN_NOT_ACTIVE"
    # Its organiser cannot approve it, by either mutation.
    assert gql.code(REVIEW, {"id": cid, "approve": True}, organiser.token) == (
        "FORBIDDEN"
    )
    assert gql.code(SET_STATUS, {"id": cid, "status": "ACTIVE"}, organiser.token) == (
        "INVALID_TRANSITION"
    )
    # Another user is told it does not exist.
    assert gql.code(SET_STATUS, {"id": cid, "status": "CLOSED"}, donor.token) == (
        "NOT_FOUND"
    )
    assert seen(gql, cid, organiser.token)["status"] == "IN_REVIEW"


def test_an_approved_campaign_goes_live_and_its_organiser_is_told(gql: GQL) -> None:
    organiser, donor, admin = f.register(gql), f.register(gql), f.admin(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    assert seen(gql, cid) is None

    approved = gql.ok(REVIEW, {"id": cid, "approve": True}, admin.token)
    assert approved["reviewCampaign"]["status"] == "ACTIVE"

    public = seen(gql, cid)
    assert (public["status"], public["acceptingPledges"]) == ("ACTIVE", True)
    assert cid in listed(gql)
    f.pledge(gql, donor.token, cid)  # takes pledges now
    (told,) = kinds_told(gql, organiser.token, 1)
    assert (told["kind"], told["campaignId"]) == ("CAMPAIGN_APPROVED", cid)
    # A decision is made once.
    again = gql.code(REVIEW, {"id": cid, "approve": False, "note": "no"}, admin.token)
    assert again == "INVALID_TRANSITION"


def test_a_rejection_needs_a_note_that_only_the_organiser_and_admins_read(
    gql: GQL,
) -> None:
    organiser, donor, admin = f.register(gql), f.register(gql), f.admin(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    no_note = {"id": cid, "approve": False}
    assert gql.code(REVIEW, no_note, admin.token) == "BAD_USER_INPUT"
    assert gql.code(REVIEW, no_note | {"note": "x" * 1001}, admin.token) == (
        "BAD_USER_INPUT"
    )
    assert seen(gql, cid, admin.token)["status"] == "IN_REVIEW"  # unchanged

    note = "The hospital's estimate is missing."
    rejected = gql.ok(REVIEW, no_note | {"note": note}, admin.token)
    assert rejected["reviewCampaign"] == {
        "id": cid,
        "status": "REJECTED",
        "reviewNote": note,
    }
    assert seen(gql, cid) is None
    assert seen(gql, cid, donor.token) is None
    mine = seen(gql, cid, organiser.token)
    assert (mine["status"], mine["reviewNote"]) == ("REJECTED", note)
    assert mine["suspensionNote"] is None
    assert cid not in listed(gql)
    (told,) = kinds_told(gql, organiser.token, 1)
    assert told["kind"] == "CAMPAIGN_REJECTED" and note in told["body"]
    # Rejected is final.
    assert gql.code(SET_STATUS, {"id": cid, "status": "ACTIVE"}, admin.token) == (
        "INVALID_TRANSITION"
    )


def test_a_suspension_is_public_and_only_an_admin_lifts_it(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(campaign_review="off"))
    organiser, donor, admin = f.register(gql), f.register(gql), f.admin(gql)
    cid = f.campaign(gql, organiser.token)["id"]
    assert gql.code(SUSPEND, {"id": cid, "note": "x"}, organiser.token) == ("FORBIDDEN")
    assert gql.code(SUSPEND, {"id": cid, "note": "  "}, admin.token) == (
        "BAD_USER_INPUT"
    )

    note = "Under investigation after reports."
    gql.ok(SUSPEND, {"id": cid, "note": note}, admin.token)

    public = seen(gql, cid)
    assert public == {
        "id": cid,
        "status": "SUSPENDED",
        "reviewNote": None,  # the organiser's and admins' only
        "suspensionNote": note,
        "acceptingPledges": False,
    }
    assert seen(gql, cid, organiser.token)["reviewNote"] == note
    code = gql.code(
        f.CREATE_PLEDGE,
        {"input": {"campaignId": cid, "amountCents": 500, "idempotencyKey": "k"}},
        donor.token,
    )
    assert code == "CAMPAIGN_NOT_ACTIVE"
    lift = {"id": cid, "status": "ACTIVE"}
    assert gql.code(SET_STATUS, lift, organiser.token) == "FORBIDDEN"
    assert gql.code(SET_STATUS, {"id": cid, "status": "PAUSED"}, organiser.token) == (
        "INVALID_TRANSITION"
    )
    (told,) = kinds_told(gql, organiser.token, 1)
    assert told["kind"] == "CAMPAIGN_SUSPENDED"

    assert gql.ok(SET_STATUS, lift, admin.token)["setCampaignStatus"]["status"] == (
        "ACTIVE"
    )
    assert seen(gql, cid)["suspensionNote"] is None
    f.pledge(gql, donor.token, cid)


def test_the_queue_is_oldest_first_with_the_organisers_history(gql: GQL) -> None:
    admin, olive, other = f.admin(gql), f.register(gql), f.register(gql)
    first = f.campaign(gql, olive.token)["id"]
    second = f.campaign(gql, other.token)["id"]
    third = f.campaign(gql, olive.token)["id"]
    gql.ok(REVIEW, {"id": second, "approve": False, "note": "no"}, admin.token)

    page = gql.ok(QUEUE, {"first": 1}, admin.token)["adminReviewQueue"]
    entries = [edge["node"] for edge in page["edges"]]
    after = page["pageInfo"]["endCursor"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = gql.ok(QUEUE, {"first": 10, "after": after}, admin.token)
    entries += [edge["node"] for edge in rest["adminReviewQueue"]["edges"]]

    ours = [e for e in entries if e["campaign"]["id"] in {first, second, third}]
    assert [e["campaign"]["id"] for e in ours] == [first, third]
    history = [(c["id"], c["status"]) for c in ours[0]["organiserCampaigns"]]
    assert history == [(third, "IN_REVIEW"), (first, "IN_REVIEW")]
    assert ours[0]["reportCount"] == 0
    for caller in (olive.token, None):
        code = gql.code(QUEUE, {"first": 1}, caller)
        assert code in {"FORBIDDEN", "UNAUTHENTICATED"}


def test_campaigns_made_before_review_was_on_stay_active(
    app_factory: Callable[..., TestClient],
) -> None:
    before = GQL(app_factory(campaign_review="off"))
    organiser = f.register(before)
    cid = f.campaign(before, organiser.token)["id"]
    after = GQL(app_factory(campaign_review="required"))
    assert seen(after, cid)["status"] == "ACTIVE"
    assert f.campaign(after, organiser.token)["status"] == "IN_REVIEW"

"""Campaigns over HTTP: who may create and manage them, validation, listing with
cursors, and what their status means for pledges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col
from starlette.testclient import TestClient

from careforall.models import Campaign
from tests import factories as f
from tests.helpers.api import GQL

CAMPAIGN = """
query($id: ID!) {
  campaign(id: $id) {
    id title description category goalCents currency status endsAt createdAt
    acceptingPledges
    owner { id name }
    totals { campaignId raisedCents pledgeCount updatedAt }
  }
}"""
CAMPAIGNS = """
query($first: Int, $after: String, $status: CampaignStatus) {
  campaigns(first: $first, after: $after, status: $status) {
    edges { cursor node { id title status } }
    pageInfo { hasNextPage endCursor }
  }
}"""
SET_STATUS = """
mutation($id: ID!, $status: CampaignStatus!) {
  setCampaignStatus(id: $id, status: $status) { id status acceptingPledges }
}"""


def campaign_input(**overrides: Any) -> dict[str, Any]:
    return {
        "title": "Knee surgery for Sam",
        "description": "Sam needs a new knee.",
        "category": "surgery",
        "goalCents": 750_000,
        "currency": "EUR",
    } | overrides


def set_status(
    gql: GQL, campaign_id: str, status: str, token: str | None
) -> dict[str, Any]:
    return gql(SET_STATUS, {"id": campaign_id, "status": status}, token)


def page(gql: GQL, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = gql.ok(CAMPAIGNS, variables)["campaigns"]
    return result


# --- createCampaign ----------------------------------------------------------------


def test_create_campaign_returns_its_fields_and_zero_totals(gql: GQL) -> None:
    organiser = f.register(gql, name="Olive")
    ends = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    data = campaign_input(endsAt=ends.isoformat(), title="  Knee surgery for Sam  ")
    created = gql.ok(f.CREATE_CAMPAIGN, {"input": data}, organiser.token)[
        "createCampaign"
    ]
    assert created["status"] == "ACTIVE"
    assert created["acceptingPledges"] is True
    assert created["owner"] == {"id": organiser.id, "name": "Olive"}
    assert created["totals"] == {
        "campaignId": created["id"],
        "raisedCents": 0,
        "pledgeCount": 0,
    }

    read = gql.ok(CAMPAIGN, {"id": created["id"]})["campaign"]
    assert read["title"] == "Knee surgery for Sam"
    assert read["description"] == "Sam needs a new knee."
    assert read["category"] == "surgery"
    assert read["goalCents"] == 750_000
    assert read["currency"] == "EUR"
    assert datetime.fromisoformat(read["endsAt"]) == ends
    assert read["totals"]["raisedCents"] == 0 and read["totals"]["pledgeCount"] == 0
    assert datetime.fromisoformat(read["createdAt"]) <= datetime.now(UTC)


def test_currency_defaults_to_usd(gql: GQL) -> None:
    organiser = f.register(gql)
    data = campaign_input()
    del data["currency"]
    created = gql.ok(f.CREATE_CAMPAIGN, {"input": data}, organiser.token)[
        "createCampaign"
    ]
    assert created["currency"] == "USD"


def test_create_campaign_needs_an_account(gql: GQL) -> None:
    assert gql.code(f.CREATE_CAMPAIGN, {"input": campaign_input()}) == "UNAUTHENTICATED"
    guest = f.anonymous(gql)
    assert (
        gql.code(f.CREATE_CAMPAIGN, {"input": campaign_input()}, guest)
        == "UNAUTHENTICATED"
    )
    assert page(gql)["edges"] == []


@pytest.mark.parametrize(
    ("overrides", "word"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"description": ""}, "description"),
        ({"category": "c" * 51}, "category"),
        ({"goalCents": 0}, "goalCents"),
        ({"goalCents": -100}, "goalCents"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": ""}, "currency"),
        ({"endsAt": "2001-01-01T00:00:00+00:00"}, "endsAt"),
    ],
)
def test_create_campaign_refuses_bad_input_in_words(
    gql: GQL, overrides: dict[str, Any], word: str
) -> None:
    organiser = f.register(gql)
    body = gql(
        f.CREATE_CAMPAIGN, {"input": campaign_input(**overrides)}, organiser.token
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert word in error["message"]
    assert body["data"] is None
    assert page(gql)["edges"] == []


# --- campaign(id) and campaigns ----------------------------------------------------


def test_unknown_campaign_is_null(gql: GQL) -> None:
    assert gql.ok(CAMPAIGN, {"id": "cmp_does_not_exist"}) == {"campaign": None}


def test_campaigns_are_paged_newest_first(gql: GQL) -> None:
    organiser = f.register(gql)
    made = [f.campaign(gql, organiser.token)["id"] for _ in range(5)]
    newest_first = made[::-1]

    first = page(gql, first=2)
    assert [e["node"]["id"] for e in first["edges"]] == newest_first[:2]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]

    second = page(gql, first=2, after=first["pageInfo"]["endCursor"])
    assert [e["node"]["id"] for e in second["edges"]] == newest_first[2:4]
    assert second["pageInfo"]["hasNextPage"] is True

    last = page(gql, first=2, after=second["pageInfo"]["endCursor"])
    assert [e["node"]["id"] for e in last["edges"]] == newest_first[4:]
    assert last["pageInfo"]["hasNextPage"] is False

    everything = page(gql)  # first defaults to 20
    assert [e["node"]["id"] for e in everything["edges"]] == newest_first
    assert everything["pageInfo"]["hasNextPage"] is False


def test_an_exactly_full_page_has_no_next_page(gql: GQL) -> None:
    organiser = f.register(gql)
    for _ in range(2):
        f.campaign(gql, organiser.token)
    result = page(gql, first=2)
    assert len(result["edges"]) == 2
    assert result["pageInfo"]["hasNextPage"] is False


def test_an_empty_list_has_no_cursor(gql: GQL) -> None:
    assert page(gql) == {
        "edges": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
    }


def test_campaigns_filter_by_status(gql: GQL) -> None:
    organiser = f.register(gql)
    active, paused, closed = (f.campaign(gql, organiser.token)["id"] for _ in range(3))
    set_status(gql, paused, "PAUSED", organiser.token)
    set_status(gql, closed, "CLOSED", organiser.token)
    assert [e["node"]["id"] for e in page(gql, status="ACTIVE")["edges"]] == [active]
    assert [e["node"]["id"] for e in page(gql, status="PAUSED")["edges"]] == [paused]
    assert [e["node"]["id"] for e in page(gql, status="CLOSED")["edges"]] == [closed]
    assert len(page(gql)["edges"]) == 3


@pytest.mark.parametrize("first", [0, -1, 101])
def test_page_size_out_of_range_is_refused(gql: GQL, first: int) -> None:
    body = gql(CAMPAIGNS, {"first": first})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "first" in body["errors"][0]["message"]


def test_largest_page_size_is_accepted(gql: GQL) -> None:
    assert page(gql, first=100)["edges"] == []


@pytest.mark.parametrize("after", ["garbage", "!!!", "", "x" * 500])
def test_cursor_not_from_the_list_is_refused(gql: GQL, after: str) -> None:
    assert gql.code(CAMPAIGNS, {"first": 5, "after": after}) == "BAD_USER_INPUT"


# --- setCampaignStatus -------------------------------------------------------------


def test_owner_pauses_and_resumes(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    paused = set_status(gql, campaign["id"], "PAUSED", organiser.token)["data"][
        "setCampaignStatus"
    ]
    assert paused == {
        "id": campaign["id"],
        "status": "PAUSED",
        "acceptingPledges": False,
    }
    resumed = set_status(gql, campaign["id"], "ACTIVE", organiser.token)["data"][
        "setCampaignStatus"
    ]
    assert resumed["status"] == "ACTIVE"
    assert resumed["acceptingPledges"] is True
    assert gql.ok(CAMPAIGN, {"id": campaign["id"]})["campaign"]["status"] == "ACTIVE"


def test_admin_manages_any_campaign(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    admin = f.admin(gql)
    body = set_status(gql, campaign["id"], "PAUSED", admin.token)
    assert body["data"]["setCampaignStatus"]["status"] == "PAUSED"
    body = set_status(gql, campaign["id"], "CLOSED", admin.token)
    assert body["data"]["setCampaignStatus"]["status"] == "CLOSED"


def test_others_may_not_change_a_campaign(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    stranger = f.register(gql)
    guest = f.anonymous(gql)
    assert (
        set_status(gql, campaign["id"], "CLOSED", stranger.token)["errors"][0][
            "extensions"
        ]["code"]
        == "FORBIDDEN"
    )
    assert (
        set_status(gql, campaign["id"], "CLOSED", guest)["errors"][0]["extensions"][
            "code"
        ]
        == "UNAUTHENTICATED"
    )
    assert (
        set_status(gql, campaign["id"], "CLOSED", None)["errors"][0]["extensions"][
            "code"
        ]
        == "UNAUTHENTICATED"
    )
    assert gql.ok(CAMPAIGN, {"id": campaign["id"]})["campaign"]["status"] == "ACTIVE"


def test_set_status_of_unknown_campaign_is_not_found(gql: GQL) -> None:
    organiser = f.register(gql)
    body = set_status(gql, "cmp_nope", "PAUSED", organiser.token)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("target", ["ACTIVE", "PAUSED"])
def test_closed_is_final(gql: GQL, target: str) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    set_status(gql, campaign["id"], "CLOSED", organiser.token)
    admin = f.admin(gql)
    for token in (organiser.token, admin.token):
        body = set_status(gql, campaign["id"], target, token)
        assert body["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
        assert "CLOSED" in body["errors"][0]["message"]
    assert gql.ok(CAMPAIGN, {"id": campaign["id"]})["campaign"]["status"] == "CLOSED"


# --- status and pledges ------------------------------------------------------------


@pytest.mark.parametrize("status", ["PAUSED", "CLOSED"])
def test_a_campaign_not_active_takes_no_pledges(gql: GQL, status: str) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    set_status(gql, campaign["id"], status, organiser.token)
    assert (
        gql.ok(CAMPAIGN, {"id": campaign["id"]})["campaign"]["acceptingPledges"]
        is False
    )
    donor = f.anonymous(gql)
    data = {
        "campaignId": campaign["id"],
        "amountCents": 100,
        "idempotencyKey": f.unique(),
    }
    body = gql(f.CREATE_PLEDGE, {"input": data}, donor)
    assert body["errors"][0]["extensions"]["code"] == "CAMPAIGN_NOT_ACTIVE"
    assert body["errors"][0]["message"]
    assert (
        gql.ok(CAMPAIGN, {"id": campaign["id"]})["campaign"]["totals"]["pledgeCount"]
        == 0
    )


def test_a_resumed_campaign_takes_pledges_again(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    key = f.unique("key")
    data = {"campaignId": campaign["id"], "amountCents": 100, "idempotencyKey": key}
    set_status(gql, campaign["id"], "PAUSED", organiser.token)
    assert gql.code(f.CREATE_PLEDGE, {"input": data}, donor) == "CAMPAIGN_NOT_ACTIVE"
    set_status(gql, campaign["id"], "ACTIVE", organiser.token)
    # The refused attempt did not burn the key.
    pledge = gql.ok(f.CREATE_PLEDGE, {"input": data}, donor)["createPledge"]
    assert pledge["status"] == "PENDING"
    assert pledge["idempotencyKey"] == key


def test_a_campaign_past_its_end_takes_no_pledges(gql: GQL, client: TestClient) -> None:
    organiser = f.register(gql)
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    campaign = f.campaign(gql, organiser.token, endsAt=ends)
    assert campaign["acceptingPledges"] is True
    db = client.app.state.runtime.db  # type: ignore[attr-defined]
    with db.write_session() as session:  # time passes: the end is now behind us
        session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign["id"])
            .values(ends_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()
    read = gql.ok(CAMPAIGN, {"id": campaign["id"]})["campaign"]
    assert read["status"] == "ACTIVE"
    assert read["acceptingPledges"] is False
    donor = f.anonymous(gql)
    data = {
        "campaignId": campaign["id"],
        "amountCents": 100,
        "idempotencyKey": f.unique(),
    }
    assert gql.code(f.CREATE_PLEDGE, {"input": data}, donor) == "CAMPAIGN_NOT_ACTIVE"

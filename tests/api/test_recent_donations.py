"""Campaign.recentDonations: the public list of a campaign's captured donations,
newest first, with a name only where the donor gave one and nothing that
identifies the donor otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until

RECENT = """
query($id: ID!, $first: Int) {
  campaign(id: $id) {
    recentDonations(first: $first) {
      donorName amountCents currency message createdAt
    }
  }
}"""


def recent(gql: GQL, campaign_id: str, first: int | None = None) -> list[Any]:
    variables: dict[str, Any] = {"id": campaign_id}
    if first is not None:
        variables["first"] = first
    donations: list[Any] = gql.ok(RECENT, variables)["campaign"]["recentDonations"]
    return donations


def paid(
    gql: GQL,
    token: str,
    campaign_id: str,
    amount: int,
    method: str = "pm_card_ok",
    **kw: Any,
) -> dict[str, Any]:
    pledge = f.pledge(gql, token, campaign_id, amount, **kw)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": method}, token)
    return pledge


def test_only_captured_donations_are_listed_newest_first_with_names_only_if_given(
    gql: GQL,
) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    guest = f.anonymous(gql)
    member = f.register(gql, name="Private Person")
    paid(gql, guest, campaign_id, 1000, donorName="Ada", message="Get well")
    paid(gql, member.token, campaign_id, 2000)
    paid(gql, guest, campaign_id, 3000, method="pm_card_declined", donorName="Bo")
    f.pledge(gql, guest, campaign_id, 4000, donorName="Never paid")
    wait_until(lambda: f.totals(gql, campaign_id) == (3000, 2))

    donations = recent(gql, campaign_id)

    assert [(d["donorName"], d["amountCents"], d["message"]) for d in donations] == [
        (None, 2000, None),
        ("Ada", 1000, "Get well"),
    ]
    assert all(d["currency"] == "USD" for d in donations)
    # The account's name is never shown for a donor who gave none.
    assert "Private Person" not in str(donations)


def test_a_refunded_donation_leaves_the_list(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    donor = f.anonymous(gql)
    pledge = paid(gql, donor, campaign_id, 1500, donorName="Cy")
    wait_until(lambda: len(recent(gql, campaign_id)) == 1)

    gql.ok(f.REFUND, {"id": pledge["id"]}, f.admin(gql).token)

    assert recent(gql, campaign_id) == []


def test_first_limits_the_list_and_defaults_to_ten(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    donor = f.anonymous(gql)
    for amount in range(101, 113):
        paid(gql, donor, campaign_id, amount)
    wait_until(lambda: f.totals(gql, campaign_id)[1] == 12)

    assert [d["amountCents"] for d in recent(gql, campaign_id, 3)] == [112, 111, 110]
    assert len(recent(gql, campaign_id)) == 10
    assert len(recent(gql, campaign_id, 50)) == 12


@pytest.mark.parametrize("first", [0, -1, 51])
def test_first_outside_1_to_50_is_bad_user_input(gql: GQL, first: int) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]

    code = gql.code(RECENT, {"id": campaign_id, "first": first})

    assert code == "BAD_USER_INPUT"


def test_an_authorized_but_not_captured_pledge_is_not_listed(
    app_factory: Any,
) -> None:
    client: TestClient = app_factory(auto_capture=False)
    gql = GQL(client)
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    donor = f.anonymous(gql)
    pledge = paid(gql, donor, campaign_id, 900, donorName="Di")
    assert f.totals(gql, campaign_id) == (0, 0)
    assert recent(gql, campaign_id) == []

    gql.ok(f.CAPTURE, {"id": pledge["id"]}, f.admin(gql).token)

    wait_until(lambda: recent(gql, campaign_id))
    assert recent(gql, campaign_id)[0]["donorName"] == "Di"

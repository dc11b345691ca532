"""A donation end to end through the API: pledge, card, capture, totals."""

from __future__ import annotations

from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until


def test_guest_donation_is_captured_and_counted(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    guest = f.anonymous(gql)
    pledge = f.pledge(gql, guest, campaign["id"], amount=2500)
    assert pledge["status"] == "PENDING"

    paid = gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, guest)[
        "authorizePayment"
    ]
    assert paid["status"] in ("AUTHORIZED", "CAPTURED")

    wait_until(lambda: f.totals(gql, campaign["id"]) == (2500, 1))
    final = gql.ok(f.PLEDGE, {"id": pledge["id"]}, guest)["pledge"]
    assert final["status"] == "CAPTURED"
    assert [(h["fromStatus"], h["toStatus"]) for h in final["history"]] == [
        (None, "PENDING"),
        ("PENDING", "AUTHORIZED"),
        ("AUTHORIZED", "CAPTURED"),
    ]

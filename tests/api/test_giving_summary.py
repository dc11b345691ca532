"""A donor's yearly giving summary: the donations paid that year, one-off
and recurring, with totals per currency; as GraphQL and as a CSV download."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from careforall.domain.clock import utcnow
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until

SUMMARY = """query($year: Int!) {
  myGivingSummary(year: $year) {
    year
    lines { pledgeId campaignTitle amountCents currency recurring }
    totals { currency amountCents donations }
  }
}"""
CREATE_PLAN = """mutation($input: RecurringDonationInput!) {
  createRecurringDonation(input: $input) { id }
}"""


def _summary(gql: GQL, token: str, year: int) -> dict[str, Any]:
    result: dict[str, Any] = gql.ok(SUMMARY, {"year": year}, token)["myGivingSummary"]
    return result


def test_the_years_paid_donations_one_off_and_recurring_with_totals(
    gql: GQL, client: TestClient
) -> None:
    organiser, donor = f.register(gql), f.register(gql)
    campaign = f.campaign(gql, organiser.token, title="=Hip for Rosa")
    paid = f.pledge(gql, donor.token, campaign["id"], amount=1_000)
    gql.ok(f.AUTHORIZE, {"id": paid["id"], "pm": "pm_card_ok"}, donor.token)
    declined = f.pledge(gql, donor.token, campaign["id"], amount=7_000)
    gql.ok(f.AUTHORIZE, {"id": declined["id"], "pm": "pm_card_declined"}, donor.token)
    gql.ok(
        CREATE_PLAN,
        {
            "input": {
                "campaignId": campaign["id"],
                "amountCents": 2_500,
                "paymentMethod": "pm_card_ok",
                "idempotencyKey": f.unique("plan"),
            }
        },
        donor.token,
    )
    year = utcnow().year
    summary = wait_until(
        lambda: (
            (s := _summary(gql, donor.token, year))["totals"]
            and s["totals"][0]["donations"] == 2
            and s
        ),
        timeout=15,
    )
    assert [(x["amountCents"], x["recurring"]) for x in summary["lines"]] == [
        (1_000, False),
        (2_500, True),
    ]
    assert summary["totals"] == [
        {"currency": "USD", "amountCents": 3_500, "donations": 2}
    ]
    assert _summary(gql, donor.token, year - 1)["lines"] == []
    assert _summary(gql, organiser.token, year)["totals"] == []

    response = client.get(
        f"/account/giving/{year}.csv",
        headers={"Authorization": f"Bearer {donor.token}"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = response.text.lstrip("\ufeff").splitlines()
    assert rows[0] == "receipt,paid_at,campaign,amount,currency,recurring"
    assert rows[1].startswith(summary["lines"][0]["pledgeId"])
    assert ",'=Hip for Rosa,10.00,USD,no" in rows[1]
    assert rows[2].endswith(",25.00,USD,yes")
    assert rows[3] == f"total,{year},,35.00,USD,"


def test_the_csv_needs_a_signed_in_token_and_a_year(
    gql: GQL, client: TestClient
) -> None:
    donor = f.register(gql)
    assert client.get("/account/giving/2026.csv").status_code == 401
    anon = f.anonymous(gql)
    headers = {"Authorization": f"Bearer {anon}"}
    assert client.get("/account/giving/2026.csv", headers=headers).status_code == 401
    headers = {"Authorization": f"Bearer {donor.token}"}
    assert client.get("/account/giving/x.csv", headers=headers).status_code == 400
    assert client.get("/account/giving/1800.csv", headers=headers).status_code == 400
    body = gql(SUMMARY, {"year": 99999}, donor.token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

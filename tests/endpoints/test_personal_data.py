"""GET /account/data: a signed-in person downloads what is held about them,
and only that; the pages that mailed links open are the web app, never cached,
and their tokens never reach the log."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests import factories as f
from tests.endpoints.conftest import JsonLogs
from tests.helpers.api import GQL
from tests.helpers.outbox import settled
from tests.helpers.waiting import wait_until

URL = "/account/data"


def test_a_person_downloads_everything_held_about_them(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql, name="Olga")
    campaign = f.campaign(gql, organiser.token, title="Roof for the school")
    donor = f.register(gql, name="Dana")
    pledge = f.pledge(gql, donor.token, campaign["id"], amount=1200, message="Go!")
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    other = f.pledge(gql, organiser.token, campaign["id"], amount=300)
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    wait_until(lambda: settled(runtime.db))

    response = client.get(URL, headers={"Authorization": f"Bearer {donor.token}"})
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        'attachment; filename="careforall-my-data.json"'
    )
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    assert data["profile"]["id"] == donor.id
    assert data["profile"]["email"] == donor.email
    assert data["profile"]["emailVerified"] is False
    assert "passwordHash" not in data["profile"]
    [mine] = data["pledges"]
    assert (mine["id"], mine["amountCents"], mine["status"]) == (
        pledge["id"],
        1200,
        "CAPTURED",
    )
    assert mine["message"] == "Go!"
    assert [step["toStatus"] for step in mine["history"]] == [
        "PENDING",
        "AUTHORIZED",
        "CAPTURED",
    ]
    assert other["id"] not in response.text
    assert data["campaignsOrganised"] == []
    assert {n["pledgeId"] for n in data["notifications"]} <= {pledge["id"]}
    assert {m["kind"] for m in data["mails"]} == {"email_verification", "receipt"}
    assert all(m["to"] == donor.email for m in data["mails"])

    organisers = client.get(
        URL, headers={"Authorization": f"Bearer {organiser.token}"}
    ).json()
    assert [c["title"] for c in organisers["campaignsOrganised"]] == [
        "Roof for the school"
    ]


def test_without_a_users_token_it_is_a_401(client: TestClient, gql: GQL) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {f.anonymous(gql)}"},
    ):
        response = client.get(URL, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]


def test_mailed_links_open_the_web_app_uncached_and_unlogged(
    client: TestClient, json_logs: JsonLogs
) -> None:
    secret = "s3cr3t-link-token-value"
    for path in ("/reset-password", "/verify-email"):
        response = client.get(f"{path}?token={secret}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/app.js">' in response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert json_logs.where(path="/verify-email")  # logged, without the query
    assert secret not in json_logs.text()


def test_a_donors_recurring_gifts_are_in_their_data_without_the_card(
    client: TestClient, gql: GQL
) -> None:
    campaign = f.campaign(gql, f.register(gql).token)
    donor = f.register(gql)
    plan = gql.ok(
        "mutation($input: RecurringDonationInput!) {"
        " createRecurringDonation(input: $input) { id } }",
        {
            "input": {
                "campaignId": campaign["id"],
                "amountCents": 900,
                "paymentMethod": "pm_card_ok",
                "idempotencyKey": f.unique("plan"),
                "interval": "WEEKLY",
            }
        },
        donor.token,
    )["createRecurringDonation"]
    response = client.get(URL, headers={"Authorization": f"Bearer {donor.token}"})
    [mine] = response.json()["recurringDonations"]
    assert (mine["id"], mine["amountCents"], mine["interval"]) == (
        plan["id"],
        900,
        "WEEKLY",
    )
    assert "paymentMethod" not in mine

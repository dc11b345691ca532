"""Recurring gifts over GraphQL: a signed-in donor starts a plan whose first
period is charged at once, sees it with its charges, and changes or cancels
it; bad input gets the contract's codes and stores nothing."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.helpers.api import GQL

PLAN = """
  id amountCents currency interval status nextChargeAt failureReason
  campaign { id }
  charges(first: 5) {
    edges { node { id status amountCents recurringDonation { id } } }
  }
"""
CREATE = f"""
mutation($input: RecurringDonationInput!) {{
  createRecurringDonation(input: $input) {{ {PLAN} }}
}}"""
MINE = f"{{ myRecurringDonations {{ {PLAN} }} }}"
CANCEL = f"mutation($id: ID!) {{ cancelRecurringDonation(id: $id) {{ {PLAN} }} }}"
UPDATE = f"""
mutation($id: ID!, $input: RecurringDonationUpdateInput!) {{
  updateRecurringDonation(id: $id, input: $input) {{ {PLAN} }}
}}"""
PAUSE = f"mutation($id: ID!) {{ pauseRecurringDonation(id: $id) {{ {PLAN} }} }}"
RESUME = f"mutation($id: ID!) {{ resumeRecurringDonation(id: $id) {{ {PLAN} }} }}"


def _input(campaign_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "input": {
            "campaignId": campaign_id,
            "amountCents": 2_500,
            "paymentMethod": "pm_card_ok",
            "idempotencyKey": f.unique("plan"),
        }
        | changes
    }


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or []]


def test_a_donor_starts_a_monthly_plan_charged_at_once(gql: GQL) -> None:
    organiser, donor = f.register(gql), f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    plan = gql.ok(CREATE, _input(campaign["id"]), donor.token)[
        "createRecurringDonation"
    ]
    assert (plan["status"], plan["interval"], plan["currency"]) == (
        "ACTIVE",
        "MONTHLY",
        "USD",
    )
    assert plan["nextChargeAt"] is not None
    [charge] = [e["node"] for e in plan["charges"]["edges"]]
    assert charge["amountCents"] == 2_500
    assert charge["status"] in ("AUTHORIZED", "CAPTURED")
    assert charge["recurringDonation"] == {"id": plan["id"]}
    pledge = gql.ok(
        "query($id: ID!) { pledge(id: $id) { recurringDonation { id status } } }",
        {"id": charge["id"]},
        donor.token,
    )["pledge"]
    assert pledge["recurringDonation"] == {"id": plan["id"], "status": "ACTIVE"}
    mine = gql.ok(MINE, None, donor.token)["myRecurringDonations"]
    assert [p["id"] for p in mine] == [plan["id"]]
    assert gql.ok(MINE, None, organiser.token)["myRecurringDonations"] == []


def test_a_one_off_pledge_has_no_plan(gql: GQL) -> None:
    organiser, donor = f.register(gql), f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    pledge = f.pledge(gql, donor.token, campaign["id"])
    data = gql.ok(
        "query($id: ID!) { pledge(id: $id) { recurringDonation { id } } }",
        {"id": pledge["id"]},
        donor.token,
    )
    assert data["pledge"]["recurringDonation"] is None


def test_the_donor_changes_pauses_resumes_and_cancels(gql: GQL) -> None:
    organiser, donor = f.register(gql), f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    plan = gql.ok(CREATE, _input(campaign["id"], interval="WEEKLY"), donor.token)[
        "createRecurringDonation"
    ]
    ids = {"id": plan["id"]}
    changed = gql.ok(
        UPDATE,
        ids | {"input": {"amountCents": 4_000, "paymentMethod": "pm_card_ok"}},
        donor.token,
    )["updateRecurringDonation"]
    assert changed["amountCents"] == 4_000
    paused = gql.ok(PAUSE, ids, donor.token)["pauseRecurringDonation"]
    assert (paused["status"], paused["nextChargeAt"]) == ("PAUSED", None)
    resumed = gql.ok(RESUME, ids, donor.token)["resumeRecurringDonation"]
    assert resumed["status"] == "ACTIVE"
    cancelled = gql.ok(CANCEL, ids, donor.token)["cancelRecurringDonation"]
    assert (cancelled["status"], cancelled["nextChargeAt"]) == ("CANCELLED", None)
    # Past charges stay as they were.
    [charge] = [e["node"] for e in cancelled["charges"]["edges"]]
    assert charge["amountCents"] == 2_500
    assert charge["status"] in ("AUTHORIZED", "CAPTURED")
    body = gql(RESUME, ids, donor.token)
    assert _codes(body) == ["INVALID_TRANSITION"]


def test_bad_plans_get_contract_codes_and_store_nothing(gql: GQL) -> None:
    organiser, donor = f.register(gql), f.register(gql)
    anon = f.anonymous(gql)
    campaign = f.campaign(gql, organiser.token)
    cid = campaign["id"]
    cases = [
        (_input(cid), anon, "UNAUTHENTICATED"),
        (_input(cid), None, "UNAUTHENTICATED"),
        (_input(cid, paymentMethod="pm_card_visa"), donor.token, "BAD_USER_INPUT"),
        (_input(cid, amountCents=0), donor.token, "BAD_USER_INPUT"),
        (_input(cid, currency="EUR"), donor.token, "BAD_USER_INPUT"),
        (_input(cid, currency="XXQ"), donor.token, "BAD_USER_INPUT"),
        (_input(cid, idempotencyKey=" k"), donor.token, "BAD_USER_INPUT"),
        (_input("cmp_missing"), donor.token, "NOT_FOUND"),
    ]
    for variables, token, code in cases:
        assert _codes(gql(CREATE, variables, token)) == [code], variables
    assert gql.ok(MINE, None, donor.token)["myRecurringDonations"] == []
    body = gql(CANCEL, {"id": "rec_missing"}, donor.token)
    assert _codes(body) == ["NOT_FOUND"]

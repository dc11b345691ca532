"""Make users, campaigns and pledges through the public API, with random names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, GQL

REGISTER = """
mutation($email: String!, $password: String!, $name: String!, $anon: String) {
  register(email: $email, password: $password, name: $name, anonymousToken: $anon) {
    token anonymous user { id email name role }
  }
}"""
LOGIN = """
mutation($email: String!, $password: String!, $anon: String) {
  login(email: $email, password: $password, anonymousToken: $anon) {
    token anonymous user { id email role }
  }
}"""
ANON = "mutation { startAnonymousSession { token anonymous user { id } } }"
CREATE_CAMPAIGN = """
mutation($input: CampaignInput!) {
  createCampaign(input: $input) {
    id title status currency goalCents acceptingPledges
    owner { id name } totals { campaignId raisedCents pledgeCount }
  }
}"""
PLEDGE_FIELDS = """
  id status amountCents currency idempotencyKey donorName message failureReason
  campaign { id }
  history { fromStatus toStatus source at }
"""
CREATE_PLEDGE = f"""
mutation($input: PledgeInput!) {{ createPledge(input: $input) {{ {PLEDGE_FIELDS} }} }}"""
AUTHORIZE = f"""
mutation($id: ID!, $pm: String!) {{
  authorizePayment(pledgeId: $id, paymentMethod: $pm) {{ {PLEDGE_FIELDS} }}
}}"""
CAPTURE = f"mutation($id: ID!) {{ capturePayment(pledgeId: $id) {{ {PLEDGE_FIELDS} }} }}"
REFUND = f"mutation($id: ID!) {{ refundPayment(pledgeId: $id) {{ {PLEDGE_FIELDS} }} }}"
PLEDGE = f"query($id: ID!) {{ pledge(id: $id) {{ {PLEDGE_FIELDS} }} }}"
TOTALS = "query($id: ID!) { campaignTotals(campaignId: $id) { campaignId raisedCents pledgeCount updatedAt } }"


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Account:
    token: str
    id: str
    email: str


def register(gql: GQL, *, name: str = "Dana Donor", anon: str | None = None) -> Account:
    email = f"{unique('user')}@example.org"
    data = gql.ok(REGISTER, {"email": email, "password": "correct horse", "name": name, "anon": anon})
    payload = data["register"]
    return Account(token=payload["token"], id=payload["user"]["id"], email=email)


def admin(gql: GQL) -> Account:
    data = gql.ok(LOGIN, {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    payload = data["login"]
    return Account(token=payload["token"], id=payload["user"]["id"], email=ADMIN_EMAIL)


def anonymous(gql: GQL) -> str:
    token: str = gql.ok(ANON)["startAnonymousSession"]["token"]
    return token


def campaign(gql: GQL, token: str, **overrides: Any) -> dict[str, Any]:
    data = {
        "title": unique("Surgery for"),
        "description": "Help pay for an operation.",
        "category": "surgery",
        "goalCents": 500_000,
        "currency": "USD",
    } | overrides
    result: dict[str, Any] = gql.ok(CREATE_CAMPAIGN, {"input": data}, token)["createCampaign"]
    return result


def pledge(gql: GQL, token: str, campaign_id: str, amount: int = 2500, **overrides: Any) -> dict[str, Any]:
    data = {
        "campaignId": campaign_id,
        "amountCents": amount,
        "currency": "USD",
        "idempotencyKey": unique("key"),
    } | overrides
    result: dict[str, Any] = gql.ok(CREATE_PLEDGE, {"input": data}, token)["createPledge"]
    return result


def totals(gql: GQL, campaign_id: str) -> tuple[int, int]:
    t = gql.ok(TOTALS, {"id": campaign_id})["campaignTotals"]
    return t["raisedCents"], t["pledgeCount"]

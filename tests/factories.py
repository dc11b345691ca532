"""Make users, campaigns and pledges through the public API, with random names."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient

from careforall.payments.signature import sign
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD, GQL

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
mutation($input: PledgeInput!) {{
  createPledge(input: $input) {{ {PLEDGE_FIELDS} }}
}}"""
AUTHORIZE = f"""
mutation($id: ID!, $pm: String!) {{
  authorizePayment(pledgeId: $id, paymentMethod: $pm) {{ {PLEDGE_FIELDS} }}
}}"""
CAPTURE = (
    f"mutation($id: ID!) {{ capturePayment(pledgeId: $id) {{ {PLEDGE_FIELDS} }} }}"
)
REFUND = f"mutation($id: ID!) {{ refundPayment(pledgeId: $id) {{ {PLEDGE_FIELDS} }} }}"
PLEDGE = f"query($id: ID!) {{ pledge(id: $id) {{ {PLEDGE_FIELDS} }} }}"
TOTALS = """
query($id: ID!) {
  campaignTotals(campaignId: $id) { campaignId raisedCents pledgeCount updatedAt }
}"""


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Account:
    token: str
    id: str
    email: str


def register(gql: GQL, *, name: str = "Dana Donor", anon: str | None = None) -> Account:
    email = f"{unique('user')}@example.org"
    data = gql.ok(
        REGISTER,
        {"email": email, "password": "correct horse", "name": name, "anon": anon},
    )
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
    result: dict[str, Any] = gql.ok(CREATE_CAMPAIGN, {"input": data}, token)[
        "createCampaign"
    ]
    return result


def pledge(
    gql: GQL, token: str, campaign_id: str, amount: int = 2500, **overrides: Any
) -> dict[str, Any]:
    data = {
        "campaignId": campaign_id,
        "amountCents": amount,
        "currency": "USD",
        "idempotencyKey": unique("key"),
    } | overrides
    result: dict[str, Any] = gql.ok(CREATE_PLEDGE, {"input": data}, token)[
        "createPledge"
    ]
    return result


def totals(gql: GQL, campaign_id: str) -> tuple[int, int]:
    t = gql.ok(TOTALS, {"id": campaign_id})["campaignTotals"]
    return t["raisedCents"], t["pledgeCount"]


# --- provider webhooks -------------------------------------------------------

WEBHOOK_URL = "/webhooks/payments"


def provider_event(
    pledge: dict[str, Any],
    kind: str,
    *,
    event_id: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    """A provider event for `pledge` (kind: authorized, captured, failed, refunded)."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": f"payment.{kind}",
        "created": int(time.time()),
        "data": {
            "pledgeId": pledge["id"],
            "amountCents": pledge["amountCents"] if amount is None else amount,
            "currency": pledge["currency"] if currency is None else currency,
        },
    }


def webhook_secret(client: TestClient) -> str:
    secret: str = client.app.state.runtime.webhook_secret  # type: ignore[attr-defined]
    return secret


def post_webhook(
    client: TestClient,
    body: dict[str, Any] | bytes,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    header: str | None = None,
    signed: bool = True,
) -> Any:
    """POST a body signed like the provider does (or with the given header)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["CareForAll-Signature"] = header
    elif signed:
        key = webhook_secret(client) if secret is None else secret
        headers["CareForAll-Signature"] = sign(key, raw, timestamp=timestamp)
    return client.post(WEBHOOK_URL, content=raw, headers=headers)

"""GraphQL documents and a small HTTP client for setting scenarios up."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

TYPENAME = "{ __typename }"
TOTALS = (
    "query($id: ID!) { campaignTotals(campaignId: $id) "
    "{ campaignId raisedCents pledgeCount updatedAt } }"
)
CAMPAIGNS = (
    "{ campaigns(first: 20) { edges { cursor node { id title goalCents currency "
    "status totals { raisedCents pledgeCount updatedAt } } } "
    "pageInfo { hasNextPage endCursor } } }"
)
CREATE_PLEDGE = (
    "mutation($input: PledgeInput!) { createPledge(input: $input) "
    "{ id status amountCents currency idempotencyKey } }"
)
AUTHORIZE = (
    "mutation($id: ID!) { authorizePayment(pledgeId: $id, "
    'paymentMethod: "pm_card_ok") { id status } }'
)
ANONYMOUS = "mutation { startAnonymousSession { token } }"
TOTALS_SUBSCRIPTION = (
    "subscription($id: ID!) { campaignTotals(campaignId: $id) "
    "{ campaignId raisedCents pledgeCount updatedAt } }"
)


class GraphQLFailed(RuntimeError):
    pass


def check(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("errors"):
        raise GraphQLFailed(str(body["errors"])[:500])
    data: dict[str, Any] = body["data"]
    return data


class Api:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30.0)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str = ""
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
        )
        if response.status_code != 200:
            raise GraphQLFailed(f"HTTP {response.status_code}: {response.text[:500]}")
        return check(response.json())

    def anonymous_token(self) -> str:
        token: str = self.gql(ANONYMOUS)["startAnonymousSession"]["token"]
        return token

    def pledge(self, token: str, campaign_id: str, amount: int = 1000) -> str:
        data = self.gql(
            CREATE_PLEDGE,
            {
                "input": {
                    "campaignId": campaign_id,
                    "amountCents": amount,
                    "idempotencyKey": uuid.uuid4().hex,
                }
            },
            token,
        )
        pledge_id: str = data["createPledge"]["id"]
        return pledge_id

    def authorize(self, token: str, pledge_id: str) -> str:
        status: str = self.gql(AUTHORIZE, {"id": pledge_id}, token)["authorizePayment"][
            "status"
        ]
        return status


def graphql_body(query: str, variables: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {"query": query, "variables": variables or {}}, separators=(",", ":")
    )

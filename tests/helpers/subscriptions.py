"""Totals over a real WebSocket (`graphql-transport-ws`): subscribing to a
campaign's totals on a `Server`, and donating while one watches."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

TOTALS_SUBSCRIPTION = """
subscription($id: ID!) {
  campaignTotals(campaignId: $id) { campaignId raisedCents pledgeCount updatedAt }
}"""


class TotalsFeed:
    """One graphql-transport-ws connection carrying one campaignTotals subscription."""

    def __init__(self, ws: ClientConnection, operation_id: str) -> None:
        self.ws = ws
        self.operation_id = operation_id

    async def message(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message for our operation (protocol pings are answered)."""
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
            message: dict[str, Any] = json.loads(raw)
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            assert message.get("id") == self.operation_id, message
            return message

    async def totals(self, timeout: float = 5.0) -> dict[str, Any]:
        message = await self.message(timeout)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        totals: dict[str, Any] = message["payload"]["data"]["campaignTotals"]
        return totals


@asynccontextmanager
async def subscribe(
    server: Server, query: str, variables: dict[str, Any], operation_id: str = "1"
) -> AsyncIterator[TotalsFeed]:
    async with connect(
        server.ws_url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        open_timeout=5,
    ) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ack["type"] == "connection_ack", ack
        await ws.send(
            json.dumps(
                {
                    "id": operation_id,
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables},
                }
            )
        )
        yield TotalsFeed(ws, operation_id)


def totals_feed(server: Server, campaign_id: str) -> Any:
    return subscribe(server, TOTALS_SUBSCRIPTION, {"id": campaign_id})


async def gql_async(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str
) -> dict[str, Any]:
    response = await http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def donation_pushed(
    watch: Server, via: Server, campaign_id: str, guest: str, amount: int
) -> tuple[dict[str, Any], dict[str, Any], str, float]:
    """Subscribe to the campaign's totals on `watch`, then donate through `via`
    as `guest` (pledge, pm_card_ok). Returns the totals sent first, the totals
    pushed next, authorizePayment's status, and the push's delay in seconds
    after that answer."""

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str, float]:
        async with totals_feed(watch, campaign_id) as feed:
            current = await feed.totals()
            async with httpx.AsyncClient(base_url=via.base_url, timeout=10) as http:
                variables = {
                    "input": {
                        "campaignId": campaign_id,
                        "amountCents": amount,
                        "currency": "USD",
                        "idempotencyKey": f.unique("key"),
                    }
                }
                pledge = (await gql_async(http, f.CREATE_PLEDGE, variables, guest))[
                    "createPledge"
                ]
                paid = await gql_async(
                    http, f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, guest
                )
                answered = time.monotonic()
            pushed = await feed.totals(timeout=10)
            status: str = paid["authorizePayment"]["status"]
            return current, pushed, status, time.monotonic() - answered

    return asyncio.run(scenario())


def pair(totals: dict[str, Any]) -> tuple[int, int]:
    return totals["raisedCents"], totals["pledgeCount"]


def captured_donation(api: ServerGQL, campaign_id: str, amount: int) -> str:
    """A guest's pledge paid with pm_card_ok; returns its id once it is CAPTURED."""
    guest = f.anonymous(api)
    pledge_id: str = f.pledge(api, guest, campaign_id, amount=amount)["id"]
    api.ok(f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, guest)
    wait_until(
        lambda: (
            api.ok(f.PLEDGE, {"id": pledge_id}, guest)["pledge"]["status"] == "CAPTURED"
        )
    )
    return pledge_id

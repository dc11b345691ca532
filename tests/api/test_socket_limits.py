"""Caps on live connections: WebSockets per address (closed with 4429) and
subscriptions per process (the operation's error, RATE_LIMITED)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests import factories as f
from tests.helpers.api import GQL

PROTOCOL = ["graphql-transport-ws"]
TOTALS = "subscription($id: ID!) { campaignTotals(campaignId: $id) { raisedCents } }"


def open_socket(client: TestClient) -> Any:
    return client.websocket_connect("/graphql", subprotocols=PROTOCOL)


def init(ws: Any) -> None:
    ws.send_json({"type": "connection_init"})
    assert ws.receive_json()["type"] == "connection_ack"


def subscribe(ws: Any, operation_id: str, campaign_id: str) -> dict[str, Any]:
    """The first message for a new subscription (an error's `complete`,
    if any, is read too)."""
    payload = {"query": TOTALS, "variables": {"id": campaign_id}}
    ws.send_json({"id": operation_id, "type": "subscribe", "payload": payload})
    message: dict[str, Any] = ws.receive_json()
    if message["type"] == "next" and "errors" in message["payload"]:
        assert ws.receive_json() == {"id": operation_id, "type": "complete"}
    return message


def errors_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message["type"] == "next":
        errors: list[dict[str, Any]] = message["payload"].get("errors", [])
        return errors
    assert message["type"] == "error", message
    payload: list[dict[str, Any]] = message["payload"]
    return payload


def test_a_websocket_past_its_address_cap_is_closed_with_4429(
    app_factory: Callable[..., TestClient],
) -> None:
    client = app_factory(rate_limits=True, ws_max_connections_per_address=2)
    with open_socket(client) as first, open_socket(client) as second:
        init(first)
        init(second)
        with open_socket(client) as third, pytest.raises(WebSocketDisconnect) as closed:
            third.send_json({"type": "connection_init"})
            third.receive_json()
        assert closed.value.code == 4429
        assert "Too many connections" in closed.value.reason
    # Closed ones free their places.
    with open_socket(client) as again:
        init(again)


def test_the_address_cap_is_off_with_the_rate_limits(
    app_factory: Callable[..., TestClient],
) -> None:
    client = app_factory(rate_limits=False, ws_max_connections_per_address=1)
    with open_socket(client) as first, open_socket(client) as second:
        init(first)
        init(second)


def test_subscriptions_past_the_process_cap_are_refused(
    app_factory: Callable[..., TestClient],
) -> None:
    client = app_factory(ws_max_subscriptions=1)
    gql = GQL(client)
    campaign_id = f.campaign(gql, f.register(gql).token)["id"]
    with open_socket(client) as ws:
        init(ws)
        assert subscribe(ws, "1", campaign_id)["type"] == "next"

        refused = subscribe(ws, "2", campaign_id)

        assert refused["id"] == "2"
        errors = errors_of(refused)
        assert errors[0]["extensions"]["code"] == "RATE_LIMITED", refused
        assert "too many live updates" in errors[0]["message"]
        # The socket stays open; once the first ends, a new one is taken.
        ws.send_json({"id": "1", "type": "complete"})
        for attempt in range(50):
            if not errors_of(subscribe(ws, f"again{attempt}", campaign_id)):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the first subscription's place was never freed")


def test_a_websocket_anywhere_but_graphql_is_refused(client: TestClient) -> None:
    # GraphQL sockets go straight to their route; any other path still meets
    # the router, which has no WebSocket there.
    for path in ("/", "/graphql/", "/healthz", "/c/anything"):
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect(path, subprotocols=PROTOCOL) as ws,
        ):
            ws.receive_json()


def test_a_graphql_socket_is_served_with_the_app_state(gql: GQL) -> None:
    # The per-address cap and the runtime are read from the app's state.
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    with open_socket(gql.client) as ws:
        init(ws)
        message = subscribe(ws, "1", campaign_id)
    assert message["type"] == "next", message
    assert message["payload"]["data"]["campaignTotals"]["raisedCents"] == 0

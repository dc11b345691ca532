"""campaignTotals subscriptions served once per campaign for every socket
(careforall/api/fanout.py): each subscriber still gets the current totals,
then every change, under its own operation id, in both WebSocket protocols;
one leaving stops only its own pushes; the caller never matters; anything
else keeps Strawberry's own path."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import anyio
from starlette.testclient import TestClient, WebSocketTestSession

from careforall.api.context import GraphQLView
from careforall.api.fanout import Fanout, Outlet
from careforall.api.sockets import socket_limits
from tests import factories as f
from tests.helpers.api import GQL, receive
from tests.helpers.waiting import wait_until

TOTALS = """
subscription($id: ID!) {
  campaignTotals(campaignId: $id) { campaignId raisedCents pledgeCount }
}"""
NOTIFICATIONS = "subscription { notificationUpdates { unreadCount } }"


def nothing_more(ws: WebSocketTestSession, wait: float = 0.3) -> bool:
    """True when the socket is sent nothing within `wait` seconds."""

    async def get() -> bool:
        with anyio.move_on_after(wait):
            await ws._send_rx.receive()
            return False
        return True

    quiet: bool = ws.portal.call(get)
    return quiet


@contextmanager
def socket(
    client: TestClient, token: str | None = None, protocol: str = "graphql-transport-ws"
) -> Iterator[WebSocketTestSession]:
    payload = {"Authorization": f"Bearer {token}"} if token else {}
    with client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        ws.send_json({"type": "connection_init", "payload": payload})
        while (message := receive(ws))["type"] == "ka":
            pass
        assert message["type"] == "connection_ack", message
        yield ws


def subscribe(
    ws: WebSocketTestSession, operation_id: str, campaign_id: str, query: str = TOTALS
) -> None:
    payload = {"query": query, "variables": {"id": campaign_id}}
    ws.send_json({"id": operation_id, "type": "subscribe", "payload": payload})


def totals(ws: WebSocketTestSession, operation_id: str) -> tuple[int, int]:
    message = receive(ws)
    assert message["id"] == operation_id, message
    assert message["type"] in ("next", "data"), message
    assert "errors" not in message["payload"], message
    data = message["payload"]["data"]["campaignTotals"]
    return data["raisedCents"], data["pledgeCount"]


def fanout(client: TestClient) -> Fanout:
    for route in client.app.routes:  # type: ignore[attr-defined]
        endpoint = getattr(route, "endpoint", None)
        if isinstance(endpoint, GraphQLView):
            return endpoint.fanout
    raise AssertionError("no GraphQL view")


def donate(gql: GQL, campaign_id: str, amount: int) -> None:
    guest = f.anonymous(gql)
    pledge_id = f.pledge(gql, guest, campaign_id, amount)["id"]
    gql.ok(f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, guest)


def test_subscribers_of_two_campaigns_share_one_run_each_and_get_every_change(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    one = f.campaign(gql, organiser.token)["id"]
    two = f.campaign(gql, organiser.token)["id"]
    with ExitStack() as stack:
        a, b, c = (stack.enter_context(socket(client)) for _ in range(3))
        subscribe(a, "a1", one)
        subscribe(a, "a2", one)  # twice on one socket, each under its own id
        subscribe(b, "b1", one)
        subscribe(c, "c1", two)
        first = sorted([receive(a)["id"], receive(a)["id"]])
        assert first == ["a1", "a2"]
        assert totals(b, "b1") == (0, 0)
        assert totals(c, "c1") == (0, 0)
        assert len(fanout(client).groups) == 2, "one run per campaign"

        donate(gql, one, 2500)
        pushed = {receive(a)["id"]: 1, receive(a)["id"]: 1}
        assert sorted(pushed) == ["a1", "a2"]
        assert totals(b, "b1") == (2500, 1)
        assert nothing_more(c), "the other campaign's subscriber hears nothing"

        donate(gql, two, 700)
        donate(gql, one, 100)
        assert totals(c, "c1") == (700, 1)
        assert totals(b, "b1") == (2600, 2)
    wait_until(lambda: not fanout(client).groups)
    assert socket_limits(client.app).subscriptions == 0


def test_a_subscriber_leaving_stops_only_its_own_pushes(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    with socket(client) as a, socket(client) as b:
        subscribe(a, "1", campaign_id)
        subscribe(b, "1", campaign_id)
        assert totals(a, "1") == totals(b, "1") == (0, 0)
        assert socket_limits(client.app).subscriptions == 2

        a.send_json({"id": "1", "type": "complete"})
        wait_until(lambda: socket_limits(client.app).subscriptions == 1)
        donate(gql, campaign_id, 1000)
        assert totals(b, "1") == (1000, 1)
        assert nothing_more(a)

        # The same id again: a new subscription, the current totals first.
        subscribe(a, "1", campaign_id)
        assert totals(a, "1") == (1000, 1)
    wait_until(lambda: not fanout(client).groups)
    assert socket_limits(client.app).subscriptions == 0


def test_the_caller_does_not_matter_to_a_shared_subscription(
    client: TestClient, gql: GQL
) -> None:
    organiser, donor = f.register(gql), f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    callers = [None, donor.token, f.anonymous(gql), "not-a-token"]
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket(client, token)) for token in callers]
        for ws in sockets:
            subscribe(ws, "1", campaign_id)
        assert [totals(ws, "1") for ws in sockets] == [(0, 0)] * 4
        assert len(fanout(client).groups) == 1
        donate(gql, campaign_id, 500)
        assert [totals(ws, "1") for ws in sockets] == [(500, 1)] * 4

        # A private subscription is not shared: its own path, its own caller.
        subscribe(sockets[0], "private", campaign_id, NOTIFICATIONS)
        refused = receive(sockets[0])
        assert refused["id"] == "private"
        errors = refused["payload"]
        errors = errors if isinstance(errors, list) else errors["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]
        assert len(fanout(client).groups) == 1


def test_the_older_protocol_shares_the_run_with_its_own_messages(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    with socket(client) as modern, socket(client, protocol="graphql-ws") as legacy:
        subscribe(modern, "m", campaign_id)
        payload = {"query": TOTALS, "variables": {"id": campaign_id}}
        legacy.send_json({"id": "l", "type": "start", "payload": payload})
        assert totals(modern, "m") == (0, 0)
        assert totals(legacy, "l") == (0, 0)  # a "data" message
        assert len(fanout(client).groups) == 1

        donate(gql, campaign_id, 300)
        assert totals(modern, "m") == (300, 1)
        assert totals(legacy, "l") == (300, 1)

        legacy.send_json({"id": "l", "type": "stop"})
        assert receive(legacy) == {"id": "l", "type": "complete"}
        donate(gql, campaign_id, 200)
        assert totals(modern, "m") == (500, 2)


def test_an_unknown_campaign_and_an_invalid_document_are_refused_as_before(
    client: TestClient,
) -> None:
    with socket(client) as ws:
        subscribe(ws, "gone", "cmp_no_such_campaign")
        unknown = receive(ws)
        assert unknown["type"] == "next"
        assert unknown["payload"]["data"] is None
        codes = [e["extensions"]["code"] for e in unknown["payload"]["errors"]]
        assert codes == ["NOT_FOUND"]
        assert receive(ws) == {"id": "gone", "type": "complete"}

        bad = "subscription { campaignTotals(campaignId: 1) { noSuchField } }"
        ws.send_json({"id": "bad", "type": "subscribe", "payload": {"query": bad}})
        invalid = receive(ws)
        assert invalid["type"] == "error", invalid
        assert [e["extensions"]["code"] for e in invalid["payload"]] == [
            "GRAPHQL_VALIDATION_FAILED"
        ]
        # Both ids are free again.
        subscribe(ws, "gone", "cmp_no_such_campaign")
        assert receive(ws)["id"] == "gone"
    assert socket_limits(client.app).subscriptions == 0


class StuckSocket:
    """A socket whose sends never finish until let go."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {}  # no way to write at once: always a task
        self.sent: list[str] = []
        self.stuck = asyncio.Event()

    async def send_text(self, frame: str) -> None:
        await self.stuck.wait()
        self.sent.append(frame)


def test_a_stuck_socket_keeps_only_the_newest_push_of_each_operation() -> None:
    async def scenario() -> list[str]:
        stuck = StuckSocket()
        outlet = Outlet(stuck)  # type: ignore[arg-type]
        outlet.offer("a", "a-1")
        await asyncio.sleep(0)  # the first send starts, and waits
        for n in range(2, 100):
            outlet.offer("a", f"a-{n}")
            outlet.offer("b", f"b-{n}")
        outlet.offer("b", "b-complete", final=True)
        outlet.offer("b", "b-late")  # after a final frame: kept behind it
        stuck.stuck.set()
        for _ in range(10):
            await asyncio.sleep(0)
        return stuck.sent

    sent = asyncio.run(scenario())
    assert sent == ["a-1", "a-99", "b-99", "b-complete", "b-late"]

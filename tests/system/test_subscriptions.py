"""The campaignTotals subscription over a real WebSocket (`graphql-transport-ws`)
against uvicorn: current totals first, then each change, within a second."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.subscriptions import (
    TOTALS_SUBSCRIPTION,
    captured_donation,
    donation_pushed,
    gql_async,
    pair,
    subscribe,
    totals_feed,
)
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.server

PUSH_DEADLINE = (
    1.0  # contract.md, Totals: "in the campaignTotals subscription, within a second"
)


def test_subscriber_gets_current_totals_then_a_guest_donation_within_a_second(
    server: Server, api: ServerGQL
) -> None:
    organiser = f.register(api)
    campaign_id = f.campaign(api, organiser.token)["id"]
    captured_donation(api, campaign_id, 1000)
    wait_until(lambda: f.totals(api, campaign_id) == (1000, 1))
    guest = f.anonymous(api)

    current, pushed, status, latency = donation_pushed(
        server, server, campaign_id, guest, 2500
    )
    print(f"push arrived {latency * 1000:.0f} ms after the authorizePayment answer")

    assert current["campaignId"] == campaign_id
    assert pair(current) == (1000, 1), "the current totals come first"
    assert status in ("AUTHORIZED", "CAPTURED")
    assert pushed["campaignId"] == campaign_id
    assert pair(pushed) == (1000 + 2500, 2)
    assert latency < PUSH_DEADLINE
    assert f.totals(api, campaign_id) == (3500, 2)


def test_pushes_are_not_compressed_though_the_client_offers_it(
    server: Server, api: ServerGQL
) -> None:
    """Browsers offer permessage-deflate; a connection that took it would keep
    zlib's buffers (about 40 KB each) for pushes of a few hundred bytes."""
    organiser = f.register(api)
    campaign_id = f.campaign(api, organiser.token)["id"]

    async def handshake() -> tuple[str | None, dict[str, Any]]:
        async with totals_feed(server, campaign_id) as feed:
            assert feed.ws.response is not None
            extensions = feed.ws.response.headers.get("Sec-WebSocket-Extensions")
            return extensions, await feed.totals()

    extensions, current = asyncio.run(handshake())
    assert extensions is None
    assert pair(current) == (0, 0)


def test_refund_pushes_the_lowered_total_to_every_subscriber(
    server: Server, api: ServerGQL
) -> None:
    organiser = f.register(api)
    admin = f.admin(api)
    campaign_id = f.campaign(api, organiser.token)["id"]
    captured_donation(api, campaign_id, 2500)
    refunded_id = captured_donation(api, campaign_id, 1000)
    wait_until(lambda: f.totals(api, campaign_id) == (3500, 2))

    async def scenario() -> tuple[
        list[dict[str, Any]], list[dict[str, Any]], str, float
    ]:
        async with (
            totals_feed(server, campaign_id) as one,
            totals_feed(server, campaign_id) as two,
        ):
            first = [await one.totals(), await two.totals()]
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
                refund = await gql_async(
                    http, f.REFUND, {"id": refunded_id}, admin.token
                )
                answered = time.monotonic()
            pushed = [await one.totals(timeout=5), await two.totals(timeout=5)]
            latency = time.monotonic() - answered
            return first, pushed, refund["refundPayment"]["status"], latency

    first, pushed, status, latency = asyncio.run(scenario())

    assert [pair(t) for t in first] == [(3500, 2), (3500, 2)]
    assert status == "REFUNDED"
    assert [pair(t) for t in pushed] == [(2500, 1), (2500, 1)], (
        "both subscribers see the refund"
    )
    assert latency < PUSH_DEADLINE
    assert f.totals(api, campaign_id) == (2500, 1)


def test_declined_card_pushes_nothing_and_leaves_totals_alone(
    server: Server, api: ServerGQL
) -> None:
    organiser = f.register(api)
    campaign_id = f.campaign(api, organiser.token)["id"]
    captured_donation(api, campaign_id, 1000)
    wait_until(lambda: f.totals(api, campaign_id) == (1000, 1))
    declined_guest, paying_guest = f.anonymous(api), f.anonymous(api)

    async def scenario() -> tuple[dict[str, Any], str, dict[str, Any]]:
        async with totals_feed(server, campaign_id) as feed:
            current = await feed.totals()
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
                declined = (
                    await gql_async(
                        http,
                        f.CREATE_PLEDGE,
                        {
                            "input": {
                                "campaignId": campaign_id,
                                "amountCents": 700,
                                "idempotencyKey": f.unique("key"),
                            }
                        },
                        declined_guest,
                    )
                )["createPledge"]
                answer = await gql_async(
                    http,
                    f.AUTHORIZE,
                    {"id": declined["id"], "pm": "pm_card_declined"},
                    declined_guest,
                )
                # Let the provider's payment.failed webhook and every event run
                # through before the next donation.
                await asyncio.to_thread(wait_until, server.settled)
                # Any push caused by the declined card would arrive before this one.
                paying = (
                    await gql_async(
                        http,
                        f.CREATE_PLEDGE,
                        {
                            "input": {
                                "campaignId": campaign_id,
                                "amountCents": 2500,
                                "idempotencyKey": f.unique("key"),
                            }
                        },
                        paying_guest,
                    )
                )["createPledge"]
                await gql_async(
                    http,
                    f.AUTHORIZE,
                    {"id": paying["id"], "pm": "pm_card_ok"},
                    paying_guest,
                )
            next_push = await feed.totals(timeout=5)
            return current, answer["authorizePayment"]["status"], next_push

    current, declined_status, next_push = asyncio.run(scenario())

    assert pair(current) == (1000, 1)
    assert declined_status == "FAILED"
    assert pair(next_push) == (1000 + 2500, 2), (
        "the next push is the paid donation alone"
    )
    assert f.totals(api, campaign_id) == (3500, 2)


def test_subscribing_to_an_unknown_campaign_gets_not_found(server: Server) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with totals_feed(server, "cmp_no_such_campaign") as feed:
            unknown = [await feed.message()]
            if unknown[0]["type"] == "next":
                unknown.append(await feed.message())  # then the operation completes
        async with subscribe(
            server, "subscription { campaignTotals(campaignId: 1) { noSuchField } }", {}
        ) as feed:
            invalid = [await feed.message()]
        return unknown, invalid

    unknown, invalid = asyncio.run(scenario())

    first = unknown[0]
    # An execution error comes as `next` with errors; a refused document as `error`.
    errors = first["payload"]["errors"] if first["type"] == "next" else first["payload"]
    assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], first
    assert "campaign" in errors[0]["message"]
    if first["type"] == "next":
        assert first["payload"]["data"] is None
        assert unknown[1]["type"] == "complete"

    assert invalid[0]["type"] == "error", invalid
    assert [e["extensions"]["code"] for e in invalid[0]["payload"]] == [
        "GRAPHQL_VALIDATION_FAILED"
    ]


def test_a_socket_answers_pings_at_both_levels_and_serves_the_older_protocol(
    server: Server, api: ServerGQL
) -> None:
    """What each open socket keeps is trimmed (careforall/ws_protocol.py): a
    WebSocket ping, a graphql-transport-ws ping and the legacy graphql-ws
    protocol still work through uvicorn."""
    organiser = f.register(api)
    campaign_id = f.campaign(api, organiser.token)["id"]

    async def modern() -> tuple[float, dict[str, Any], dict[str, Any]]:
        async with totals_feed(server, campaign_id) as feed:
            current = await feed.totals()
            latency = await asyncio.wait_for(await feed.ws.ping(), 5)
            await feed.ws.send(json.dumps({"type": "ping"}))
            pong = json.loads(await asyncio.wait_for(feed.ws.recv(), 5))
            return latency, pong, current

    latency, pong, current = asyncio.run(modern())
    assert latency >= 0
    assert pong == {"type": "pong"}
    assert pair(current) == (0, 0)

    async def legacy() -> dict[str, Any]:
        async with connect(
            server.ws_url, subprotocols=[Subprotocol("graphql-ws")], open_timeout=5
        ) as ws:
            assert ws.subprotocol == "graphql-ws"
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            payload = {"query": TOTALS_SUBSCRIPTION, "variables": {"id": campaign_id}}
            await ws.send(json.dumps({"id": "1", "type": "start", "payload": payload}))
            while True:
                message: dict[str, Any] = json.loads(
                    await asyncio.wait_for(ws.recv(), 5)
                )
                if message["type"] in ("connection_ack", "ka"):
                    continue
                return message

    data = asyncio.run(legacy())
    assert data["type"] == "data", data
    assert pair(data["payload"]["data"]["campaignTotals"]) == (0, 0)


def _stuck_socket(server: Server, campaign_id: str, operations: int) -> socket.socket:
    """A graphql-transport-ws connection subscribed `operations` times to the
    campaign's totals that never reads again (a tiny receive buffer, so what
    the server sends it piles up on the server's side)."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head

    def frame(message: dict[str, Any]) -> bytes:
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        size = len(payload)
        header = (
            struct.pack("!BB", 0x81, 0x80 | size)
            if size < 126
            else struct.pack("!BBH", 0x81, 0x80 | 126, size)
        )
        return header + mask + masked

    raw.sendall(frame({"type": "connection_init"}))
    for n in range(operations):
        payload = {"query": TOTALS_SUBSCRIPTION, "variables": {"id": campaign_id}}
        raw.sendall(frame({"id": f"stuck{n}", "type": "subscribe", "payload": payload}))
    return raw


def test_a_socket_that_never_reads_holds_up_no_other_subscriber(
    server: Server, api: ServerGQL
) -> None:
    organiser = f.register(api)
    campaign_id = f.campaign(api, organiser.token)["id"]
    stuck = _stuck_socket(server, campaign_id, operations=50)
    try:

        async def scenario() -> list[tuple[tuple[int, int], float]]:
            seen: list[tuple[tuple[int, int], float]] = []
            async with totals_feed(server, campaign_id) as feed:
                assert pair(await feed.totals()) == (0, 0)
                for _ in range(5):
                    await asyncio.to_thread(captured_donation, api, campaign_id, 100)
                    captured = time.monotonic()
                    pushed = pair(await feed.totals(timeout=5))
                    seen.append((pushed, time.monotonic() - captured))
            return seen

        seen = asyncio.run(scenario())
    finally:
        stuck.close()
    assert [pushed for pushed, _ in seen] == [(100 * k, k) for k in range(1, 6)]
    assert max(delay for _, delay in seen) < PUSH_DEADLINE
    assert f.totals(api, campaign_id) == (500, 5)

"""The same request twenty times at the same moment, on a real server: one
pledge, one event, one charge (contract.md, Pledge idempotency)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.server

CALLERS = 20
MY_DONATIONS = "query { myDonations(first: 100) { edges { node { id status } } } }"


def all_at_once(
    server: Server, query: str, variables: dict[str, Any], token: str, n: int = CALLERS
) -> list[httpx.Response]:
    """POST the same GraphQL request from `n` threads, each on its own open
    connection, released together by a barrier."""
    barrier = threading.Barrier(n)
    with ExitStack() as stack:
        clients = [
            stack.enter_context(httpx.Client(base_url=server.base_url, timeout=30))
            for _ in range(n)
        ]
        for client in clients:  # connect first, so only the requests race
            assert client.get("/healthz").status_code == 200

        def send(client: httpx.Client) -> httpx.Response:
            barrier.wait(timeout=10)
            return client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )

        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(send, clients))


def test_twenty_identical_create_pledge_requests_make_one_pledge(
    server: Server, api: ServerGQL
) -> None:
    organiser = f.register(api)
    campaign_id = f.campaign(api, organiser.token)["id"]
    donor = f.register(api)
    key = f.unique("key")
    variables = {
        "input": {
            "campaignId": campaign_id,
            "amountCents": 4200,
            "currency": "USD",
            "idempotencyKey": key,
            "donorName": "Sam",
        }
    }

    responses = all_at_once(server, f.CREATE_PLEDGE, variables, donor.token)

    assert [r.status_code for r in responses] == [200] * CALLERS
    bodies = [r.json() for r in responses]
    assert [b.get("errors") for b in bodies] == [None] * CALLERS
    pledges = [b["data"]["createPledge"] for b in bodies]
    ids = {p["id"] for p in pledges}
    assert len(ids) == 1, f"{len(ids)} different pledges for one key"
    (pledge_id,) = ids
    assert {(p["status"], p["amountCents"], p["idempotencyKey"]) for p in pledges} == {
        ("PENDING", 4200, key)
    }

    mine = api.ok(MY_DONATIONS, token=donor.token)["myDonations"]["edges"]
    assert [e["node"]["id"] for e in mine] == [pledge_id]
    assert (
        server.scalar(
            "SELECT count(*) FROM pledges WHERE campaign_id = ?", (campaign_id,)
        )
        == 1
    )
    assert len(server.events("PledgeCreated", pledge_id)) == 1
    assert (
        server.scalar(
            "SELECT count(*) FROM pledge_transitions WHERE pledge_id = ?", (pledge_id,)
        )
        == 1
    )
    assert server.logged_errors() == []


def test_twenty_concurrent_authorizations_charge_and_count_once(
    server: Server, api: ServerGQL
) -> None:
    organiser = f.register(api)
    campaign_id = f.campaign(api, organiser.token)["id"]
    donor = f.register(api)
    pledge_id = f.pledge(api, donor.token, campaign_id, amount=3100)["id"]

    responses = all_at_once(
        server, f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, donor.token
    )

    assert [r.status_code for r in responses] == [200] * CALLERS, "no 5xx"
    bodies = [r.json() for r in responses]
    paid = [b["data"]["authorizePayment"] for b in bodies if not b.get("errors")]
    codes = [e["extensions"]["code"] for b in bodies for e in b.get("errors") or []]
    # Whoever reads the pledge after another call moved it is refused, as the
    # contract says for a non-PENDING pledge; nothing else may go wrong.
    assert set(codes) <= {"INVALID_TRANSITION"}, codes
    assert paid, "at least one call authorizes"
    assert {p["status"] for p in paid} <= {"AUTHORIZED", "CAPTURED"}
    print(f"{len(paid)} answered with the pledge, {len(codes)} with INVALID_TRANSITION")

    def captured() -> dict[str, Any] | None:
        pledge: dict[str, Any] = api.ok(f.PLEDGE, {"id": pledge_id}, donor.token)[
            "pledge"
        ]
        return pledge if pledge["status"] == "CAPTURED" else None

    final = wait_until(captured)
    wait_until(server.settled)
    assert [(h["fromStatus"], h["toStatus"]) for h in final["history"]] == [
        (None, "PENDING"),
        ("PENDING", "AUTHORIZED"),
        ("AUTHORIZED", "CAPTURED"),
    ]
    assert server.query(
        "SELECT status, amount_cents FROM sim_payments WHERE pledge_id = ?",
        (pledge_id,),
    ) == [("captured", 3100)], "exactly one provider payment"
    owed = [
        json.loads(body) for (body,) in server.query("SELECT body FROM sim_webhooks")
    ]
    kinds = sorted(w["type"] for w in owed if w["data"]["pledgeId"] == pledge_id)
    assert kinds == ["payment.authorized", "payment.captured"], (
        "one webhook per provider move"
    )
    changes = [e["to_status"] for e in server.events("PledgeStatusChanged", pledge_id)]
    assert changes == ["AUTHORIZED", "CAPTURED"]
    assert f.totals(api, campaign_id) == (3100, 1)
    assert server.logged_errors() == []

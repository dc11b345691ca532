"""Reads for a whole answer: recent donations of every campaign in one
statement, and the database read in worker threads, never on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from careforall.api import context as api_context
from careforall.services import auth, campaigns, pledges, totals
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.outbox import settled
from tests.helpers.waiting import wait_until

RECENT_OF_ALL = (
    "{ campaigns { edges { node { id recentDonations { amountCents } } } } }"
)


def paid(gql: GQL, token: str, campaign_id: str, amount: int) -> None:
    pledge = f.pledge(gql, token, campaign_id, amount)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, token)


# --- recent donations: one statement for a whole answer ---------------------------


@pytest.fixture
def pledge_reads(client: TestClient) -> Iterator[list[str]]:
    """The SQL statements that read the pledges table, while the test runs."""
    engine = client.app.state.runtime.db.engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def record(*args: Any) -> None:
        statement = str(args[2])
        if "FROM pledges" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_recent_donations_of_many_campaigns_are_one_statement(
    gql: GQL, client: TestClient, pledge_reads: list[str]
) -> None:
    organiser = f.register(gql)
    donor = f.anonymous(gql)
    ids = [f.campaign(gql, organiser.token)["id"] for _ in range(4)]
    for n, campaign_id in enumerate(ids):
        for amount in range(n + 1):
            paid(gql, donor, campaign_id, 1000 + amount)
    wait_until(lambda: f.totals(gql, ids[-1]) == (4006, 4))
    # Nothing else reads pledges meanwhile (the outbox's handlers, the
    # provider's webhooks), so what is counted is the query's own reads.
    db = client.app.state.runtime.db  # type: ignore[attr-defined]
    wait_until(lambda: settled(db))
    pledge_reads.clear()

    data = gql.ok(RECENT_OF_ALL)

    assert len(pledge_reads) == 1, pledge_reads
    got = {
        e["node"]["id"]: e["node"]["recentDonations"]
        for e in data["campaigns"]["edges"]
    }
    for n, campaign_id in enumerate(ids):
        # Newest first: the amounts were paid in rising order.
        assert [d["amountCents"] for d in got[campaign_id]] == [
            1000 + a for a in reversed(range(n + 1))
        ]


def test_each_campaign_gets_its_own_first_donations(gql: GQL) -> None:
    organiser = f.register(gql)
    donor = f.anonymous(gql)
    ids = [f.campaign(gql, organiser.token)["id"] for _ in range(2)]
    for campaign_id in ids:
        for amount in (100, 200, 300):
            paid(gql, donor, campaign_id, amount)
    wait_until(lambda: all(f.totals(gql, c) == (600, 3) for c in ids))
    query = (
        "{ campaigns { edges { node { id "
        "two: recentDonations(first: 2) { amountCents } "
        "one: recentDonations(first: 1) { amountCents } } } } }"
    )

    nodes = [e["node"] for e in gql.ok(query)["campaigns"]["edges"]]

    for node in nodes:
        assert [d["amountCents"] for d in node["two"]] == [300, 200]
        assert [d["amountCents"] for d in node["one"]] == [300]


def test_a_bad_first_is_refused_for_its_field_only(gql: GQL) -> None:
    organiser = f.register(gql)
    f.campaign(gql, organiser.token)
    query = (
        "{ campaigns { edges { node { id "
        "bad: recentDonations(first: 0) { amountCents } "
        "good: recentDonations(first: 2) { amountCents } } } } }"
    )
    body = gql(query)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["path"][-1] == "bad"


# --- the database is read off the event loop --------------------------------------


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_resolvers_read_the_database_in_worker_threads(
    gql: GQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    donor = f.anonymous(gql)
    pledge_id = f.pledge(gql, donor, campaign_id)["id"]
    reads: dict[str, bool] = {}

    def watched(module: Any, name: str) -> None:
        real = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            reads[name] = _on_event_loop()
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    watched(campaigns, "list_campaigns")
    watched(campaigns, "get_campaign")
    watched(campaigns, "my_campaigns")
    watched(campaigns, "campaigns_by_id")
    watched(auth, "users_by_id")
    watched(auth, "get_user")
    watched(totals, "read_totals")
    watched(pledges, "recent_donations")
    watched(pledges, "get_pledge")
    watched(pledges, "my_donations")
    watched(pledges, "history")
    watched(api_context, "authenticate")

    node = "id owner { name } totals { raisedCents } recentDonations { amountCents }"
    gql.ok(f"{{ campaigns {{ edges {{ node {{ {node} }} }} }} }}")
    gql.ok(f'{{ campaign(id: "{campaign_id}") {{ {node} }} }}')
    gql.ok("{ me { id } myCampaigns { edges { node { id } } } }", None, organiser.token)
    gql.ok(
        f'{{ pledge(id: "{pledge_id}") {{ id history {{ toStatus }} '
        "campaign { id } } myDonations { edges { node { id } } } }",
        None,
        donor,
    )

    assert set(reads) == {
        "list_campaigns",
        "get_campaign",
        "my_campaigns",
        "campaigns_by_id",
        "users_by_id",
        "get_user",
        "read_totals",
        "recent_donations",
        "get_pledge",
        "my_donations",
        "history",
        "authenticate",
    }
    assert [name for name, on_loop in reads.items() if on_loop] == []


def test_the_notification_feed_reads_in_worker_threads(
    gql: GQL, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from careforall.services import notifications

    token = f.register(gql).token
    reads: dict[str, bool] = {}
    for name in ("latest_id", "unread_count"):
        real = getattr(notifications, name)

        def wrapper(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            reads[_name] = _on_event_loop()
            return _real(*args, **kw)

        monkeypatch.setattr(notifications, name, wrapper)

    with client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"]
    ) as ws:
        ws.send_json(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        )
        assert ws.receive_json()["type"] == "connection_ack"
        query = "subscription { notificationUpdates { unreadCount } }"
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query}})
        assert ws.receive_json()["type"] == "next"

    assert reads == {"latest_id": False, "unread_count": False}

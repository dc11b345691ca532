"""The notification feed over GraphQL: each caller sees and marks only their
own, the feed pages newest first, the subscription pushes new notifications
and the unread count (token in the header or in connection_init), and a
flood of forged webhooks reaches each admin as one notification."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.testclient import TestClient, WebSocketTestSession

from tests import factories as f
from tests.helpers.api import GQL, receive
from tests.helpers.waiting import wait_until

FEED = """
query($first: Int, $after: String, $unreadOnly: Boolean) {
  notifications(first: $first, after: $after, unreadOnly: $unreadOnly) {
    edges { cursor node { id kind title body pledgeId campaignId createdAt readAt } }
    pageInfo { hasNextPage endCursor }
  }
  unreadNotificationCount
}"""
MARK = """
mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { marked unreadCount } }"""
MARK_ALL = """
mutation($upTo: ID) { markAllNotificationsRead(upTo: $upTo) { marked unreadCount } }"""
UPDATES = """
subscription { notificationUpdates { unreadCount notifications { id kind pledgeId } } }
"""


def feed(gql: GQL, token: str, **variables: Any) -> dict[str, Any]:
    data: dict[str, Any] = gql.ok(FEED, variables, token)
    return data


def nodes(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in data["notifications"]["edges"]]


def captured(gql: GQL, token: str, campaign_id: str, amount: int = 2500) -> str:
    """A pledge paid with a card that works (auto-capture captures it)."""
    pledge_id: str = f.pledge(gql, token, campaign_id, amount)["id"]
    gql.ok(f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, token)
    return pledge_id


def notified(gql: GQL, token: str, count: int) -> list[dict[str, Any]]:
    """Wait until the caller has `count` notifications; returns them."""

    def enough() -> list[dict[str, Any]] | None:
        found = nodes(feed(gql, token))
        return found if len(found) == count else None

    found: list[dict[str, Any]] = wait_until(enough)
    return found


# --- permissions ------------------------------------------------------------------


def test_each_caller_sees_and_marks_only_their_own(gql: GQL) -> None:
    organiser = f.register(gql, name="Olga Organiser")
    alice, bob = f.register(gql, name="Alice"), f.register(gql, name="Bob")
    campaign = f.campaign(gql, organiser.token)
    alices = captured(gql, alice.token, campaign["id"])
    bobs = captured(gql, bob.token, campaign["id"])

    (alice_note,) = notified(gql, alice.token, 1)
    (bob_note,) = notified(gql, bob.token, 1)
    assert (alice_note["kind"], alice_note["pledgeId"]) == ("PAYMENT_CAPTURED", alices)
    assert bob_note["pledgeId"] == bobs
    kinds = [n["kind"] for n in notified(gql, organiser.token, 2)]
    assert kinds == ["DONATION_RECEIVED", "DONATION_RECEIVED"]

    # Bob cannot mark Alice's, even among his own; nor can an admin or a guest.
    admin, guest = f.admin(gql), f.anonymous(gql)
    ids = {"ids": [bob_note["id"], alice_note["id"]]}
    assert gql.code(MARK, ids, bob.token) == "FORBIDDEN"
    for stranger in (admin.token, guest):
        assert gql.code(MARK, {"ids": [alice_note["id"]]}, stranger) == "FORBIDDEN"
    assert gql.code(MARK, {"ids": ["ntf_nope"]}, bob.token) == "NOT_FOUND"
    assert gql.code(MARK, {"ids": [alice_note["id"]]}) == "UNAUTHENTICATED"
    assert feed(gql, alice.token)["unreadNotificationCount"] == 1
    assert feed(gql, bob.token)["unreadNotificationCount"] == 1

    # Without a token, or with a bad one, there is no feed at all.
    for token in (None, "not-a-token"):
        body = gql(FEED, {}, token)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert body.get("data") is None
    # An admin's and a guest's feeds hold nothing of the donors'.
    assert nodes(feed(gql, admin.token)) == nodes(feed(gql, guest)) == []

    marked = gql.ok(MARK, {"ids": [alice_note["id"]]}, alice.token)
    assert marked["markNotificationsRead"] == {"marked": 1, "unreadCount": 0}
    (read,) = nodes(feed(gql, alice.token))
    assert read["readAt"] is not None
    assert feed(gql, bob.token)["unreadNotificationCount"] == 1


def test_a_guest_has_a_feed_and_keeps_it_on_registering(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    guest = f.anonymous(gql)
    pledge_id = captured(gql, guest, campaign["id"], 1500)
    (note,) = notified(gql, guest, 1)
    assert (note["kind"], note["pledgeId"]) == ("PAYMENT_CAPTURED", pledge_id)

    account = f.register(gql, name="Gale", anon=guest)
    assert [n["id"] for n in nodes(feed(gql, account.token))] == [note["id"]]
    assert nodes(feed(gql, guest)) == []


# --- paging --------------------------------------------------------------------------


def test_the_feed_pages_newest_first_and_can_show_only_unread(gql: GQL) -> None:
    organiser, donor = f.register(gql), f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    for amount in (100, 200, 300, 400, 500):
        captured(gql, donor.token, campaign["id"], amount)
    everything = notified(gql, donor.token, 5)
    assert [n["id"] for n in everything] == sorted(
        (n["id"] for n in everything), reverse=True
    )

    seen: list[str] = []
    after = None
    for expected_more in (True, True, False):
        page = feed(gql, donor.token, first=2, after=after)["notifications"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert page["pageInfo"]["hasNextPage"] is expected_more
        after = page["pageInfo"]["endCursor"]
    assert seen == [n["id"] for n in everything]  # each once, in order

    # Mark the oldest three read (all up to the third newest's id).
    upto = everything[2]["id"]
    result = gql.ok(MARK_ALL, {"upTo": upto}, donor.token)["markAllNotificationsRead"]
    assert result == {"marked": 3, "unreadCount": 2}
    unread = feed(gql, donor.token, unreadOnly=True)
    assert [n["id"] for n in nodes(unread)] == [n["id"] for n in everything[:2]]
    assert unread["unreadNotificationCount"] == 2

    assert gql.code(FEED, {"first": 0}, donor.token) == "BAD_USER_INPUT"
    assert gql.code(FEED, {"after": "garbage!"}, donor.token) == "BAD_USER_INPUT"
    too_many = {"ids": [f"ntf_{i}" for i in range(101)]}
    assert gql.code(MARK, too_many, donor.token) == "BAD_USER_INPUT"


# --- the subscription -------------------------------------------------------------


@contextmanager
def updates(
    client: TestClient, token: str, *, in_header: bool = False
) -> Iterator[WebSocketTestSession]:
    headers = {"Authorization": f"Bearer {token}"} if in_header else {}
    payload = {} if in_header else {"Authorization": f"Bearer {token}"}
    with client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"], headers=headers
    ) as ws:
        ws.send_json({"type": "connection_init", "payload": payload})
        assert receive(ws)["type"] == "connection_ack"
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": UPDATES}})
        yield ws
        ws.send_json({"id": "1", "type": "complete"})


def update(ws: WebSocketTestSession) -> dict[str, Any]:
    message = receive(ws)
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    value: dict[str, Any] = message["payload"]["data"]["notificationUpdates"]
    return value


def test_the_subscription_pushes_each_new_notification_and_the_count(
    client: TestClient, gql: GQL
) -> None:
    organiser, alice, bob = f.register(gql), f.register(gql), f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    captured(gql, alice.token, campaign["id"], 100)
    notified(gql, alice.token, 1)

    with updates(client, alice.token) as ws:
        assert update(ws) == {"unreadCount": 1, "notifications": []}

        # Bob's donation is no news to Alice; her own declined card is.
        captured(gql, bob.token, campaign["id"])
        notified(gql, bob.token, 1)
        declined = f.pledge(gql, alice.token, campaign["id"], 300)["id"]
        gql.ok(f.AUTHORIZE, {"id": declined, "pm": "pm_card_declined"}, alice.token)
        pushed = update(ws)
        assert pushed["unreadCount"] == 2
        assert [(n["kind"], n["pledgeId"]) for n in pushed["notifications"]] == [
            ("PAYMENT_FAILED", declined)
        ]

        # Read elsewhere (another tab): the count falls here too.
        gql.ok(MARK_ALL, {}, alice.token)
        assert update(ws) == {"unreadCount": 0, "notifications": []}


def test_the_subscription_takes_the_token_from_the_header_too(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    guest = f.anonymous(gql)
    with updates(client, guest, in_header=True) as ws:
        assert update(ws) == {"unreadCount": 0, "notifications": []}
        pledge_id = captured(gql, guest, campaign["id"])
        pushed = update(ws)
    assert pushed["unreadCount"] == 1
    assert [n["pledgeId"] for n in pushed["notifications"]] == [pledge_id]


def test_the_subscription_ends_when_its_token_is_ended(
    client: TestClient, gql: GQL
) -> None:
    """Signed out in another tab: the open socket gets none of the account's
    later notifications, only an UNAUTHENTICATED end."""
    organiser, alice, admin = f.register(gql), f.register(gql), f.admin(gql)
    campaign = f.campaign(gql, organiser.token)
    pledge_id = captured(gql, alice.token, campaign["id"])
    notified(gql, alice.token, 1)
    with updates(client, alice.token) as ws:
        assert update(ws) == {"unreadCount": 1, "notifications": []}
        gql.ok("mutation { logout }", {}, alice.token)
        # News for Alice after she signed out: her gift refunded.
        gql.ok(f.REFUND, {"id": pledge_id}, admin.token)
        message = receive(ws)
        assert receive(ws) == {"id": "1", "type": "complete"}
    assert message["payload"]["data"] is None, message
    assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == [
        "UNAUTHENTICATED"
    ]


def test_the_subscription_refuses_a_caller_without_a_valid_token(
    client: TestClient,
) -> None:
    for payload in ({}, {"Authorization": "Bearer not-a-token"}):
        with client.websocket_connect(
            "/graphql", subprotocols=["graphql-transport-ws"]
        ) as ws:
            ws.send_json({"type": "connection_init", "payload": payload})
            assert receive(ws)["type"] == "connection_ack"
            ws.send_json(
                {"id": "1", "type": "subscribe", "payload": {"query": UPDATES}}
            )
            message = receive(ws)
        errors = message["payload"]
        errors = errors if isinstance(errors, list) else errors["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]


# --- admins --------------------------------------------------------------------------


def test_a_flood_of_forged_webhooks_reaches_each_admin_once(
    client: TestClient, gql: GQL
) -> None:
    admin, donor = f.admin(gql), f.register(gql)
    organiser = f.register(gql)
    pledge = f.pledge(gql, donor.token, f.campaign(gql, organiser.token)["id"])
    for _ in range(40):
        body = f.provider_event(pledge, "captured")
        response = f.post_webhook(client, body, secret="not-the-secret")
        assert response.status_code == 400

    (alert,) = nodes(feed(gql, admin.token))
    assert alert["kind"] == "WEBHOOKS_REJECTED"
    assert "signature" in alert["body"]
    assert nodes(feed(gql, donor.token)) == nodes(feed(gql, organiser.token)) == []
    # Nothing about the pledge changed.
    assert gql.ok(f.PLEDGE, {"id": pledge["id"]}, donor.token)["pledge"]["status"] == (
        "PENDING"
    )

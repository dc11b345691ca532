"""Pledges and payments over HTTP: validation, idempotency, who sees what,
donation history, and the payment moves with their effect on totals."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.payments.signature import sign
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.outbox import outbox_drained, settled
from tests.helpers.waiting import wait_until

MY_DONATIONS = """
query($first: Int, $after: String) {
  myDonations(first: $first, after: $after) {
    edges { cursor node { id amountCents campaign { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def pledge_input(campaign_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "campaignId": campaign_id,
        "amountCents": 2500,
        "currency": "USD",
        "idempotencyKey": f.unique("key"),
    } | overrides


def app_db(client: TestClient) -> Database:
    db: Database = client.app.state.runtime.db  # type: ignore[attr-defined]
    return db


def get_pledge(gql: GQL, pledge_id: str, token: str) -> dict[str, Any]:
    result: dict[str, Any] = gql.ok(f.PLEDGE, {"id": pledge_id}, token)["pledge"]
    return result


def moves(pledge: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    return [(h["fromStatus"], h["toStatus"], h["source"]) for h in pledge["history"]]


def from_provider(source: str) -> str:
    """The provider answers authorizePayment twice, in its reply and by webhook;
    whichever is applied first is the one history keeps."""
    if source == "api" or re.fullmatch(r"webhook:evt_[0-9a-f]{24}", source):
        return "provider"
    return source


@pytest.fixture
def scene(gql: GQL) -> dict[str, Any]:
    """An organiser with an ACTIVE USD campaign."""
    organiser = f.register(gql, name="Olive")
    return {"organiser": organiser, "campaign": f.campaign(gql, organiser.token)}


# --- createPledge validation -------------------------------------------------------


def test_a_pledge_starts_pending_with_its_fields(
    gql: GQL, scene: dict[str, Any]
) -> None:
    donor = f.anonymous(gql)
    data = pledge_input(scene["campaign"]["id"], donorName=" Ann ", message="Get well!")
    pledge = gql.ok(f.CREATE_PLEDGE, {"input": data}, donor)["createPledge"]
    assert pledge["status"] == "PENDING"
    assert pledge["amountCents"] == 2500
    assert pledge["currency"] == "USD"
    assert pledge["idempotencyKey"] == data["idempotencyKey"]
    assert pledge["donorName"] == "Ann"
    assert pledge["message"] == "Get well!"
    assert pledge["failureReason"] is None
    assert pledge["campaign"] == {"id": scene["campaign"]["id"]}
    assert moves(pledge) == [(None, "PENDING", "api")]


@pytest.mark.parametrize("amount", [1, 100_000_000])
def test_amount_limits_are_accepted(
    gql: GQL, scene: dict[str, Any], amount: int
) -> None:
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, scene["campaign"]["id"], amount=amount)
    assert pledge["amountCents"] == amount


@pytest.mark.parametrize("amount", [0, -1, 100_000_001, 2**31 - 1])
def test_amount_out_of_range_is_bad_user_input(
    gql: GQL, scene: dict[str, Any], amount: int
) -> None:
    donor = f.anonymous(gql)
    body = gql(
        f.CREATE_PLEDGE,
        {"input": pledge_input(scene["campaign"]["id"], amountCents=amount)},
        donor,
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "amountCents" in body["errors"][0]["message"]
    assert gql.ok(MY_DONATIONS, {}, donor)["myDonations"]["edges"] == []


@pytest.mark.parametrize("amount", [1.5, "100", 2**31, True, None])
def test_amount_that_is_not_an_int_variable_is_bad_user_input(
    gql: GQL, scene: dict[str, Any], amount: object
) -> None:
    donor = f.anonymous(gql)
    body = gql(
        f.CREATE_PLEDGE,
        {"input": pledge_input(scene["campaign"]["id"], amountCents=amount)},
        donor,
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "amountCents" in error["message"]
    assert gql.ok(MY_DONATIONS, {}, donor)["myDonations"]["edges"] == []


def test_fractional_amount_literal_fails_validation(
    gql: GQL, scene: dict[str, Any]
) -> None:
    donor = f.anonymous(gql)
    campaign_id = scene["campaign"]["id"]
    document = (
        f'mutation {{ createPledge(input: {{campaignId: "{campaign_id}",'
        ' amountCents: 1.5, idempotencyKey: "k1"}) { id } }'
    )
    assert gql.code(document, token=donor) == "GRAPHQL_VALIDATION_FAILED"
    assert gql.ok(MY_DONATIONS, {}, donor)["myDonations"]["edges"] == []


def test_currency_must_be_the_campaigns(gql: GQL, scene: dict[str, Any]) -> None:
    donor = f.anonymous(gql)
    euro = f.campaign(gql, scene["organiser"].token, currency="EUR")
    body = gql(
        f.CREATE_PLEDGE, {"input": pledge_input(euro["id"])}, donor
    )  # USD by default
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "EUR" in body["errors"][0]["message"]
    ok = gql.ok(
        f.CREATE_PLEDGE, {"input": pledge_input(euro["id"], currency="EUR")}, donor
    )
    assert ok["createPledge"]["currency"] == "EUR"
    body = gql(
        f.CREATE_PLEDGE, {"input": pledge_input(euro["id"], currency="eur")}, donor
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("overrides", "word"),
    [
        ({"idempotencyKey": ""}, "idempotencyKey"),
        ({"idempotencyKey": " padded "}, "idempotencyKey"),
        ({"idempotencyKey": "k" * 256}, "idempotencyKey"),
        ({"donorName": "n" * 101}, "donorName"),
        ({"message": "m" * 1001}, "message"),
    ],
)
def test_other_pledge_fields_are_checked(
    gql: GQL, scene: dict[str, Any], overrides: dict[str, Any], word: str
) -> None:
    donor = f.anonymous(gql)
    body = gql(
        f.CREATE_PLEDGE,
        {"input": pledge_input(scene["campaign"]["id"], **overrides)},
        donor,
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert word in body["errors"][0]["message"]


def test_unknown_campaign_is_not_found(gql: GQL) -> None:
    donor = f.anonymous(gql)
    assert (
        gql.code(f.CREATE_PLEDGE, {"input": pledge_input("cmp_missing")}, donor)
        == "NOT_FOUND"
    )


def test_a_pledge_needs_a_token(gql: GQL, scene: dict[str, Any]) -> None:
    body = gql(f.CREATE_PLEDGE, {"input": pledge_input(scene["campaign"]["id"])})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert body["data"] is None


# --- idempotency -------------------------------------------------------------------


def test_same_key_and_params_return_the_same_pledge(
    gql: GQL, scene: dict[str, Any]
) -> None:
    donor = f.register(gql)
    data = pledge_input(scene["campaign"]["id"], message="hi")
    first = gql.ok(f.CREATE_PLEDGE, {"input": data}, donor.token)["createPledge"]
    again = gql.ok(f.CREATE_PLEDGE, {"input": data}, donor.token)["createPledge"]
    assert again["id"] == first["id"]
    assert moves(again) == [(None, "PENDING", "api")]  # no second creation
    edges = gql.ok(MY_DONATIONS, {}, donor.token)["myDonations"]["edges"]
    assert [e["node"]["id"] for e in edges] == [first["id"]]


def test_replay_after_payment_returns_the_pledge_as_it_is_now(
    gql: GQL, scene: dict[str, Any]
) -> None:
    donor = f.anonymous(gql)
    data = pledge_input(scene["campaign"]["id"])
    first = gql.ok(f.CREATE_PLEDGE, {"input": data}, donor)["createPledge"]
    gql.ok(f.AUTHORIZE, {"id": first["id"], "pm": "pm_card_ok"}, donor)
    wait_until(lambda: get_pledge(gql, first["id"], donor)["status"] == "CAPTURED")
    # Even a paused campaign answers a replay: the pledge already exists.
    gql.ok(
        "mutation($id: ID!) { setCampaignStatus(id: $id, status: PAUSED) { id } }",
        {"id": scene["campaign"]["id"]},
        scene["organiser"].token,
    )
    again = gql.ok(f.CREATE_PLEDGE, {"input": data}, donor)["createPledge"]
    assert again["id"] == first["id"]
    assert again["status"] == "CAPTURED"


@pytest.mark.parametrize(
    "change",
    [
        {"amountCents": 2501},
        {"message": "different"},
        {"donorName": "Someone"},
        {"campaign": True},
    ],
)
def test_same_key_with_other_params_is_refused(
    gql: GQL, scene: dict[str, Any], change: dict[str, Any]
) -> None:
    donor = f.anonymous(gql)
    data = pledge_input(scene["campaign"]["id"])
    first = gql.ok(f.CREATE_PLEDGE, {"input": data}, donor)["createPledge"]
    if change.pop("campaign", False):
        change["campaignId"] = f.campaign(gql, scene["organiser"].token)["id"]
    body = gql(f.CREATE_PLEDGE, {"input": data | change}, donor)
    assert body["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "idempotencyKey" in body["errors"][0]["message"]
    edges = gql.ok(MY_DONATIONS, {}, donor)["myDonations"]["edges"]
    assert [(e["node"]["id"], e["node"]["amountCents"]) for e in edges] == [
        (first["id"], 2500)
    ]


def test_the_same_key_from_another_donor_is_another_pledge(
    gql: GQL, scene: dict[str, Any]
) -> None:
    data = pledge_input(scene["campaign"]["id"], idempotencyKey="shared-key")
    one, two = f.anonymous(gql), f.anonymous(gql)
    user = f.register(gql)
    ids = {
        gql.ok(f.CREATE_PLEDGE, {"input": data}, token)["createPledge"]["id"]
        for token in (one, two, user.token)
    }
    assert len(ids) == 3
    # A different amount under the same key is fine for someone else too.
    other = gql.ok(
        f.CREATE_PLEDGE, {"input": data | {"amountCents": 99}}, f.anonymous(gql)
    )
    assert other["createPledge"]["id"] not in ids


# --- pledge(id) visibility ---------------------------------------------------------


@pytest.mark.parametrize("donor_kind", ["user", "anon"])
def test_who_sees_a_pledge(gql: GQL, scene: dict[str, Any], donor_kind: str) -> None:
    donor = f.register(gql).token if donor_kind == "user" else f.anonymous(gql)
    pledge = f.pledge(gql, donor, scene["campaign"]["id"], amount=1234)
    pid = {"id": pledge["id"]}

    assert gql.ok(f.PLEDGE, pid, donor)["pledge"]["amountCents"] == 1234
    assert gql.ok(f.PLEDGE, pid, f.admin(gql).token)["pledge"]["id"] == pledge["id"]
    for stranger in (f.register(gql).token, f.anonymous(gql), scene["organiser"].token):
        body = gql(f.PLEDGE, pid, stranger)
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert body["data"] == {"pledge": None}
        assert "1234" not in json.dumps(body)
    assert gql.code(f.PLEDGE, pid) == "UNAUTHENTICATED"
    # Another's pledge and a missing one answer alike: an id reveals nothing.
    missing = gql(f.PLEDGE, {"id": "plg_missing"}, donor)
    hidden = gql(f.PLEDGE, pid, f.anonymous(gql))
    for body in (missing, hidden):
        assert body["data"] == {"pledge": None}
    assert [(e["message"], e["extensions"]) for e in missing["errors"]] == [
        (e["message"], e["extensions"]) for e in hidden["errors"]
    ]


# --- myDonations -------------------------------------------------------------------


@pytest.mark.parametrize("donor_kind", ["user", "anon"])
def test_my_donations_newest_first_in_pages(
    gql: GQL, scene: dict[str, Any], donor_kind: str
) -> None:
    donor = f.register(gql).token if donor_kind == "user" else f.anonymous(gql)
    other = f.anonymous(gql)
    made = []
    for amount in (101, 102, 103, 104, 105):
        made.append(f.pledge(gql, donor, scene["campaign"]["id"], amount=amount)["id"])
        f.pledge(
            gql, other, scene["campaign"]["id"], amount=7
        )  # someone else's, interleaved
    newest_first = made[::-1]

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        result = gql.ok(MY_DONATIONS, {"first": 2, "after": after}, donor)[
            "myDonations"
        ]
        seen += [e["node"]["id"] for e in result["edges"]]
        pages += 1
        assert result["pageInfo"]["endCursor"] == result["edges"][-1]["cursor"]
        if not result["pageInfo"]["hasNextPage"]:
            break
        after = result["pageInfo"]["endCursor"]
    assert seen == newest_first
    assert pages == 3
    everything = gql.ok(MY_DONATIONS, {}, donor)["myDonations"]
    assert [e["node"]["amountCents"] for e in everything["edges"]] == [
        105,
        104,
        103,
        102,
        101,
    ]


def test_my_donations_needs_a_token_and_checks_paging(gql: GQL) -> None:
    assert gql.code(MY_DONATIONS, {}) == "UNAUTHENTICATED"
    donor = f.anonymous(gql)
    assert gql.code(MY_DONATIONS, {"first": 0}, donor) == "BAD_USER_INPUT"
    assert gql.code(MY_DONATIONS, {"first": 101}, donor) == "BAD_USER_INPUT"
    assert gql.code(MY_DONATIONS, {"after": "nonsense"}, donor) == "BAD_USER_INPUT"


# --- authorizePayment --------------------------------------------------------------


def test_only_the_donor_may_pay(gql: GQL, scene: dict[str, Any]) -> None:
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, scene["campaign"]["id"])
    variables = {"id": pledge["id"], "pm": "pm_card_ok"}
    missing = gql(f.AUTHORIZE, {"id": "plg_missing", "pm": "pm_card_ok"}, donor)
    for stranger in (f.anonymous(gql), f.register(gql).token):
        # As for a pledge that does not exist: same code, same words.
        hidden = gql(f.AUTHORIZE, variables, stranger)
        assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert hidden["errors"][0]["message"] == missing["errors"][0]["message"]
    # An admin may know it exists, but only its donor pays it.
    assert gql.code(f.AUTHORIZE, variables, f.admin(gql).token) == "FORBIDDEN"
    assert gql.code(f.AUTHORIZE, variables) == "UNAUTHENTICATED"
    assert get_pledge(gql, pledge["id"], donor)["status"] == "PENDING"
    assert (
        gql.code(f.AUTHORIZE, {"id": "plg_missing", "pm": "pm_card_ok"}, donor)
        == "NOT_FOUND"
    )


def test_declined_card_fails_the_pledge_and_leaves_totals(
    gql: GQL, client: TestClient, scene: dict[str, Any]
) -> None:
    campaign_id = scene["campaign"]["id"]
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign_id, amount=4000)
    failed = gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_declined"}, donor)[
        "authorizePayment"
    ]
    assert failed["status"] == "FAILED"
    # The same words whether the provider's reply or its webhook applied first.
    assert failed["failureReason"] == "Your card was declined."
    (created, declined) = moves(failed)
    assert created == (None, "PENDING", "api")
    assert (
        declined[:2] == ("PENDING", "FAILED")
        and from_provider(declined[2]) == "provider"
    )

    wait_until(lambda: settled(app_db(client)))
    assert f.totals(gql, campaign_id) == (0, 0)
    final = get_pledge(gql, pledge["id"], donor)
    assert final["status"] == "FAILED"
    assert (
        len(final["history"]) == 2
    )  # the provider's own "failed" webhook changed nothing
    # A failed pledge cannot be paid again; a new pledge can.
    assert (
        gql.code(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
        == "INVALID_TRANSITION"
    )


def test_unknown_payment_method_charges_nothing(
    gql: GQL, scene: dict[str, Any]
) -> None:
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, scene["campaign"]["id"])
    for method in ("pm_card_unknown", ""):
        body = gql(f.AUTHORIZE, {"id": pledge["id"], "pm": method}, donor)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert body["errors"][0]["message"]
    assert get_pledge(gql, pledge["id"], donor)["status"] == "PENDING"
    paid = gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)[
        "authorizePayment"
    ]
    assert paid["status"] in ("AUTHORIZED", "CAPTURED")


def test_authorize_twice_is_an_invalid_transition(
    gql: GQL, scene: dict[str, Any]
) -> None:
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, scene["campaign"]["id"], amount=600)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    body = gql(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    assert body["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
    assert body["errors"][0]["message"]
    wait_until(lambda: f.totals(gql, scene["campaign"]["id"]) == (600, 1))
    captured = get_pledge(gql, pledge["id"], donor)
    assert [m[:2] for m in moves(captured)] == [
        (None, "PENDING"),
        ("PENDING", "AUTHORIZED"),
        ("AUTHORIZED", "CAPTURED"),
    ]


# --- capturePayment / refundPayment, and the source of each move -------------------
#
# The simulated provider answers a payment call in its reply and again by webhook;
# whichever is applied first is the move history keeps (see `from_provider`). The
# apps below cannot deliver the provider's webhooks (their URL is a closed port on
# 127.0.0.1), so each move is recorded from the reply and its source is exact.


@pytest.fixture
def webhooks_undeliverable() -> Iterator[str]:
    """A URL on 127.0.0.1 that refuses connections while the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/payments"


@pytest.fixture
def offline(
    app_factory: Callable[..., TestClient], webhooks_undeliverable: str
) -> tuple[GQL, TestClient]:
    """Auto-capture on; provider webhooks never arrive."""
    client = app_factory(provider_webhook_url=webhooks_undeliverable)
    return GQL(client), client


@pytest.fixture
def manual(
    app_factory: Callable[..., TestClient], webhooks_undeliverable: str
) -> tuple[GQL, TestClient]:
    """Auto-capture off: an authorized pledge waits for an admin."""
    client = app_factory(
        auto_capture=False, provider_webhook_url=webhooks_undeliverable
    )
    return GQL(client), client


def authorized_pledge(gql: GQL, amount: int = 3000) -> tuple[str, dict[str, Any], str]:
    """(campaign id, pledge, anonymous donor's token) for a pledge just authorized."""
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"], amount=amount)
    paid = gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)[
        "authorizePayment"
    ]
    assert paid["status"] == "AUTHORIZED"
    return campaign["id"], paid, donor


def test_capture_and_refund_are_for_admins(manual: tuple[GQL, TestClient]) -> None:
    gql, _ = manual
    _, pledge, donor = authorized_pledge(gql)
    someone = f.register(gql).token
    for document in (f.CAPTURE, f.REFUND):
        assert (
            gql.code(document, {"id": pledge["id"]}, donor) == "UNAUTHENTICATED"
        )  # the anonymous donor
        assert gql.code(document, {"id": pledge["id"]}, someone) == "FORBIDDEN"
        assert gql.code(document, {"id": pledge["id"]}) == "UNAUTHENTICATED"
    assert get_pledge(gql, pledge["id"], donor)["status"] == "AUTHORIZED"


def test_a_signed_in_donor_may_not_capture_or_refund(
    gql: GQL, scene: dict[str, Any]
) -> None:
    donor = f.register(gql).token
    pledge = f.pledge(gql, donor, scene["campaign"]["id"])
    assert gql.code(f.CAPTURE, {"id": pledge["id"]}, donor) == "FORBIDDEN"
    assert gql.code(f.REFUND, {"id": pledge["id"]}, donor) == "FORBIDDEN"


def test_admin_captures_an_authorized_pledge(manual: tuple[GQL, TestClient]) -> None:
    gql, client = manual
    campaign_id, pledge, donor = authorized_pledge(gql, amount=3000)
    wait_until(lambda: outbox_drained(app_db(client)))
    # With auto-capture off nothing captures it, and it is not counted yet.
    assert get_pledge(gql, pledge["id"], donor)["status"] == "AUTHORIZED"
    assert f.totals(gql, campaign_id) == (0, 0)

    admin = f.admin(gql)
    captured = gql.ok(f.CAPTURE, {"id": pledge["id"]}, admin.token)["capturePayment"]
    assert captured["status"] == "CAPTURED"
    assert moves(captured) == [
        (None, "PENDING", "api"),
        ("PENDING", "AUTHORIZED", "api"),
        ("AUTHORIZED", "CAPTURED", "admin"),
    ]
    wait_until(lambda: f.totals(gql, campaign_id) == (3000, 1))
    assert (
        gql.code(f.CAPTURE, {"id": pledge["id"]}, admin.token) == "INVALID_TRANSITION"
    )
    assert f.totals(gql, campaign_id) == (3000, 1)


def test_capture_or_refund_of_a_pending_pledge_is_an_invalid_transition(
    manual: tuple[GQL, TestClient],
) -> None:
    gql, _ = manual
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])
    admin = f.admin(gql)
    body = gql(f.CAPTURE, {"id": pledge["id"]}, admin.token)
    assert body["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
    assert body["errors"][0]["message"]
    assert gql.code(f.REFUND, {"id": pledge["id"]}, admin.token) == "INVALID_TRANSITION"
    assert gql.code(f.CAPTURE, {"id": "plg_missing"}, admin.token) == "NOT_FOUND"
    assert moves(get_pledge(gql, pledge["id"], donor)) == [(None, "PENDING", "api")]


def test_refund_of_an_authorized_pledge_is_an_invalid_transition(
    manual: tuple[GQL, TestClient],
) -> None:
    gql, _ = manual
    _, pledge, donor = authorized_pledge(gql)
    admin = f.admin(gql)
    assert gql.code(f.REFUND, {"id": pledge["id"]}, admin.token) == "INVALID_TRANSITION"
    assert get_pledge(gql, pledge["id"], donor)["status"] == "AUTHORIZED"


def test_auto_capture_then_admin_refund_record_their_sources(
    offline: tuple[GQL, TestClient],
) -> None:
    gql, _ = offline
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    donor = f.register(gql).token
    kept = f.pledge(gql, donor, campaign_id, amount=1000)
    refunded = f.pledge(gql, donor, campaign_id, amount=2500)
    for p in (kept, refunded):
        paid = gql.ok(f.AUTHORIZE, {"id": p["id"], "pm": "pm_card_ok"}, donor)[
            "authorizePayment"
        ]
        assert paid["status"] in ("AUTHORIZED", "CAPTURED")
    wait_until(lambda: f.totals(gql, campaign_id) == (3500, 2))
    captured = wait_until(
        lambda: (
            (p := get_pledge(gql, refunded["id"], donor))["status"] == "CAPTURED" and p
        )
    )
    assert moves(captured) == [
        (None, "PENDING", "api"),
        ("PENDING", "AUTHORIZED", "api"),
        ("AUTHORIZED", "CAPTURED", "auto-capture"),
    ]

    admin = f.admin(gql)
    result = gql.ok(f.REFUND, {"id": refunded["id"]}, admin.token)["refundPayment"]
    assert result["status"] == "REFUNDED"
    assert moves(result)[-1] == ("CAPTURED", "REFUNDED", "admin")
    stamps = [datetime.fromisoformat(h["at"]) for h in result["history"]]
    assert stamps == sorted(stamps)
    wait_until(lambda: f.totals(gql, campaign_id) == (1000, 1))

    body = gql(f.REFUND, {"id": refunded["id"]}, admin.token)
    assert body["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
    assert len(get_pledge(gql, refunded["id"], donor)["history"]) == 4
    assert f.totals(gql, campaign_id) == (1000, 1)


def test_a_provider_webhook_shows_in_history_with_its_event_id(
    manual: tuple[GQL, TestClient],
) -> None:
    gql, client = manual
    campaign_id, pledge, donor = authorized_pledge(gql, amount=1500)
    event_id = f.unique("evt_test")
    body = json.dumps(
        {
            "id": event_id,
            "type": "payment.captured",
            "created": int(time.time()),
            "data": {"pledgeId": pledge["id"], "amountCents": 1500, "currency": "USD"},
        }
    ).encode()
    secret: str = client.app.state.runtime.webhook_secret  # type: ignore[attr-defined]
    response = client.post(
        "/webhooks/payments",
        content=body,
        headers={
            "CareForAll-Signature": sign(secret, body),
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}

    assert moves(get_pledge(gql, pledge["id"], donor)) == [
        (None, "PENDING", "api"),
        ("PENDING", "AUTHORIZED", "api"),
        ("AUTHORIZED", "CAPTURED", f"webhook:{event_id}"),
    ]
    wait_until(lambda: f.totals(gql, campaign_id) == (1500, 1))


def test_with_webhooks_delivered_every_move_is_recorded_once(
    gql: GQL, client: TestClient, scene: dict[str, Any]
) -> None:
    """The provider's reply and its webhook both arrive; each move is kept once."""
    campaign_id = scene["campaign"]["id"]
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign_id, amount=800)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    wait_until(lambda: f.totals(gql, campaign_id) == (800, 1))
    wait_until(lambda: settled(app_db(client)))
    final = get_pledge(gql, pledge["id"], donor)
    created, authorized, captured = moves(final)
    assert created == (None, "PENDING", "api")
    assert (
        authorized[:2] == ("PENDING", "AUTHORIZED")
        and from_provider(authorized[2]) == "provider"
    )
    assert captured[:2] == ("AUTHORIZED", "CAPTURED")
    assert captured[2] == "auto-capture" or re.fullmatch(
        r"webhook:evt_[0-9a-f]{24}", captured[2]
    )
    assert f.totals(gql, campaign_id) == (800, 1)

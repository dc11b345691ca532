"""Stripe's faults against a real server: the stand-in of Stripe's API times
out or answers 500 during a capture or a refund, loses its answer to an
authorization, sends its webhook before its answer, sends one for a
PaymentIntent of no pledge, and the server is killed (SIGKILL) while Stripe
holds the answer to a capture it made. Each time: the
money moves once (the stand-in's effects are counted), every retry carries
the first call's idempotency key, and the pledge and totals end right."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, StripeStandIn
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.server

SETTLE_TIMEOUT = 20.0


@pytest.fixture
def stripe_server(
    make_server: Callable[..., Server], stripe_standin: StripeStandIn
) -> Callable[..., Server]:
    """A server paying through the stand-in, which posts its webhooks to it."""

    def make(timeout: float = 1.0, **env: str) -> Server:
        server = make_server(
            start=False,
            CAREFORALL_PAYMENT_PROVIDER="stripe",
            CAREFORALL_STRIPE_SECRET_KEY=SECRET_KEY,
            CAREFORALL_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            CAREFORALL_STRIPE_API_BASE=stripe_standin.url,
            CAREFORALL_STRIPE_TIMEOUT_SECONDS=str(timeout),
            **env,
        )
        stripe_standin.webhook_url = f"{server.base_url}/webhooks/stripe"
        server.start()
        return server

    return make


@pytest.fixture
def connect() -> Iterator[Callable[[Server], ServerGQL]]:
    clients: list[httpx.Client] = []

    def make(server: Server) -> ServerGQL:
        client = httpx.Client(base_url=server.base_url, timeout=30.0)
        clients.append(client)
        return ServerGQL(client)

    yield make
    for client in clients:
        client.close()


def pledge_for(api: ServerGQL, amount: int) -> tuple[dict[str, Any], str, str]:
    """A PENDING pledge; returns it, its donor's token and an admin's token."""
    admin = f.admin(api)
    donor = f.register(api)
    campaign = f.campaign(api, admin.token)
    return f.pledge(api, donor.token, campaign["id"], amount), donor.token, admin.token


def authorize(api: ServerGQL, pledge: dict[str, Any], donor: str) -> str:
    paid = api.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_visa"}, donor)
    status: str = paid["authorizePayment"]["status"]
    return status


def status_of(server: Server, pledge_id: str) -> str:
    value: str = server.scalar("SELECT status FROM pledges WHERE id = ?", (pledge_id,))
    return value


def settled_as(server: Server, pledge_id: str, status: str) -> None:
    wait_until(
        lambda: status_of(server, pledge_id) == status and server.settled(),
        timeout=SETTLE_TIMEOUT,
        what=f"pledge {pledge_id} {status} and the outbox settled",
    )


def raised(server: Server, campaign_id: str) -> int:
    value: int = server.scalar(
        "SELECT raised_cents FROM campaign_totals WHERE campaign_id = ?",
        (campaign_id,),
    )
    return value


def one_key(standin: StripeStandIn, endpoint: str, pledge_id: str, step: str) -> None:
    keys = {call.idempotency_key for call in standin.calls(endpoint)}
    assert keys == {f"careforall:{pledge_id}:{step}"}


@pytest.mark.parametrize("fault", ["timeout", "500"])
def test_a_capture_stripe_does_not_answer_is_retried_and_charged_once(
    stripe_server: Callable[..., Server],
    connect: Callable[[Server], ServerGQL],
    stripe_standin: StripeStandIn,
    fault: str,
) -> None:
    server = stripe_server()
    api = connect(server)
    pledge, donor, _ = pledge_for(api, 4200)
    stripe_standin.fail_next("capture", fault, times=2)
    assert authorize(api, pledge, donor) in ("AUTHORIZED", "CAPTURED")
    settled_as(server, pledge["id"], "CAPTURED")
    # The outbox asked again after each unanswered call, with the same key
    # (after a timeout, Stripe's webhook may have told first).
    calls = len(stripe_standin.calls("capture"))
    assert calls == 3 if fault == "500" else calls >= 1
    one_key(stripe_standin, "capture", pledge["id"], "capture")
    assert [e.amount for e in stripe_standin.effects("capture")] == [4200]
    assert raised(server, pledge["campaign"]["id"]) == 4200


@pytest.mark.parametrize("fault", ["timeout", "500"])
def test_a_refund_stripe_does_not_answer_is_refunded_once(
    stripe_server: Callable[..., Server],
    connect: Callable[[Server], ServerGQL],
    stripe_standin: StripeStandIn,
    fault: str,
) -> None:
    server = stripe_server()
    api = connect(server)
    pledge, donor, admin = pledge_for(api, 3100)
    authorize(api, pledge, donor)
    settled_as(server, pledge["id"], "CAPTURED")
    stripe_standin.fail_next("refund", fault)
    first = api(f.REFUND, {"id": pledge["id"]}, admin)
    assert first["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    if fault == "timeout":
        # Stripe refunded: its webhook tells, and the admin need not ask again.
        settled_as(server, pledge["id"], "REFUNDED")
    else:
        assert status_of(server, pledge["id"]) == "CAPTURED"
        again = api.ok(f.REFUND, {"id": pledge["id"]}, admin)["refundPayment"]
        assert again["status"] == "REFUNDED"
        settled_as(server, pledge["id"], "REFUNDED")
    one_key(stripe_standin, "refund", pledge["id"], "refund")
    assert [e.amount for e in stripe_standin.effects("refund")] == [3100]
    assert raised(server, pledge["campaign"]["id"]) == 0


def test_webhooks_that_arrive_before_the_answers_change_nothing_twice(
    stripe_server: Callable[..., Server],
    connect: Callable[[Server], ServerGQL],
    stripe_standin: StripeStandIn,
) -> None:
    stripe_standin.webhooks = "before"
    server = stripe_server()
    api = connect(server)
    pledge, donor, admin = pledge_for(api, 2700)
    assert authorize(api, pledge, donor) in ("AUTHORIZED", "CAPTURED")
    settled_as(server, pledge["id"], "CAPTURED")
    sent = {d.type: d.status for d in stripe_standin.deliveries}
    assert sent["payment_intent.amount_capturable_updated"] == 200
    assert sent["payment_intent.succeeded"] == 200
    history = api.ok(f.PLEDGE, {"id": pledge["id"]}, admin)["pledge"]["history"]
    assert [h["toStatus"] for h in history] == ["PENDING", "AUTHORIZED", "CAPTURED"]
    # The webhook got there first: the pledge moved by it, not by the answer.
    assert history[1]["source"].startswith("webhook:evt_")
    assert [e.kind for e in stripe_standin.effects()] == ["authorize", "capture"]
    assert raised(server, pledge["campaign"]["id"]) == 2700


def test_a_webhook_for_a_payment_intent_of_no_pledge_is_acknowledged(
    stripe_server: Callable[..., Server], stripe_standin: StripeStandIn
) -> None:
    server = stripe_server()
    stranger = {"id": "pi_other", "amount": 999, "currency": "usd", "metadata": {}}
    event = stripe_standin.event("payment_intent.succeeded", stranger)
    assert stripe_standin.post_event(event) == 200
    assert (
        server.scalar(
            "SELECT outcome FROM webhook_log WHERE event_id = ?", (event["id"],)
        )
        == "ignored"
    )


def test_a_sigkill_while_stripe_holds_the_captures_answer_charges_once(
    stripe_server: Callable[..., Server],
    connect: Callable[[Server], ServerGQL],
    stripe_standin: StripeStandIn,
) -> None:
    # No webhook comes to the rescue: the restarted outbox must finish it.
    stripe_standin.webhooks = "held"
    stripe_standin.hold_seconds = 8.0
    server = stripe_server(timeout=6.0)
    api = connect(server)
    pledge, donor, _ = pledge_for(api, 5100)
    stripe_standin.fail_next("capture", "timeout")
    assert authorize(api, pledge, donor) == "AUTHORIZED"
    # Stripe captured and holds its answer; the server waits for it.
    wait_until(
        lambda: stripe_standin.effects("capture"),
        timeout=SETTLE_TIMEOUT,
        what="Stripe to capture",
    )
    server.kill()
    assert status_of(server, pledge["id"]) == "AUTHORIZED"
    server.start()
    settled_as(server, pledge["id"], "CAPTURED")
    stripe_standin.deliver()
    wait_until(
        lambda: len(stripe_standin.deliveries) == len(stripe_standin.book.events),
        timeout=SETTLE_TIMEOUT,
        what="Stripe's webhooks delivered",
    )
    assert {d.status for d in stripe_standin.deliveries} == {200}
    settled_as(server, pledge["id"], "CAPTURED")
    first, second, *_ = stripe_standin.calls("capture")
    assert second.replayed
    one_key(stripe_standin, "capture", pledge["id"], "capture")
    assert [e.amount for e in stripe_standin.effects("capture")] == [5100]
    assert raised(server, pledge["campaign"]["id"]) == 5100


def test_an_authorization_whose_answer_is_lost_is_settled_by_the_webhook(
    stripe_server: Callable[..., Server],
    connect: Callable[[Server], ServerGQL],
    stripe_standin: StripeStandIn,
) -> None:
    server = stripe_server()
    api = connect(server)
    pledge, donor, _ = pledge_for(api, 3300)
    stripe_standin.fail_next("create", "timeout")
    first = api(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_visa"}, donor)
    assert first["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    # Stripe authorized it: its webhook tells, and auto-capture follows.
    settled_as(server, pledge["id"], "CAPTURED")
    # The donor's retry finds it paid; nothing is charged again.
    again = api(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_visa"}, donor)
    assert again["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
    assert [e.kind for e in stripe_standin.effects()] == ["authorize", "capture"]
    assert raised(server, pledge["campaign"]["id"]) == 3300

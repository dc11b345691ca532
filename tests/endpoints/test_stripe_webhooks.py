"""Payments through Stripe in the app: the API's payment mutations call the
stand-in of Stripe's API, and POST /webhooks/stripe applies Stripe's signed
events through the pledge machine, once per event id (contract-0.3.md,
"Payments through Stripe")."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from careforall.api.provider_info import STRIPE_TEST_NOTICE
from careforall.db import Database
from careforall.models import Notification, Pledge, WebhookLog
from careforall.services import totals
from careforall.services.unit_of_work import UnitOfWork
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.outbox import outbox_drained, settled
from tests.helpers.stripe_api import Json
from tests.helpers.stripe_standin import (
    WEBHOOK_SECRET,
    StripeStandIn,
    sign,
)
from tests.helpers.waiting import wait_until

URL = "/webhooks/stripe"
PROVIDER = "query { paymentProvider { name simulated notice } }"


@pytest.fixture
def stripe_app(
    app_factory: Callable[..., TestClient], stripe_standin: StripeStandIn
) -> TestClient:
    # Webhooks are posted by each test, in the order it chooses.
    stripe_standin.webhooks = "held"
    config = stripe_standin.config(timeout_seconds=2.0)
    return app_factory(payment_provider="stripe", stripe=config, auto_capture=False)


@pytest.fixture
def sgql(stripe_app: TestClient) -> GQL:
    return GQL(stripe_app)


def post(
    client: TestClient,
    event: Json,
    *,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
) -> Any:
    payload = json.dumps(event)
    return client.post(
        URL,
        content=payload.encode(),
        headers={
            "Stripe-Signature": sign(secret, payload, timestamp),
            "Content-Type": "application/json",
        },
    )


def events_of(standin: StripeStandIn, kind: str) -> list[Json]:
    return [e for e in standin.book.events if e["type"] == kind]


def paid_pledge(gql: GQL, amount: int = 2500) -> tuple[dict[str, Any], str]:
    """A pledge authorized through Stripe; returns it and an admin's token."""
    admin = f.admin(gql)
    donor = f.register(gql)
    campaign = f.campaign(gql, admin.token)
    pledge = f.pledge(gql, donor.token, campaign["id"], amount)
    paid = gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_visa"}, donor.token)
    assert paid["authorizePayment"]["status"] == "AUTHORIZED"
    return pledge, admin.token


def status(db: Database, pledge_id: str) -> str:
    with db.read() as session:
        pledge = session.get(Pledge, pledge_id)
        assert pledge is not None
        return pledge.status


def test_the_provider_says_stripe_and_not_simulated(sgql: GQL) -> None:
    # A test key: the notice says that no card is charged.
    assert sgql.ok(PROVIDER)["paymentProvider"] == {
        "name": "stripe",
        "simulated": False,
        "notice": STRIPE_TEST_NOTICE,
    }


def test_with_a_live_key_no_notice_is_given(
    app_factory: Callable[..., TestClient], stripe_standin: StripeStandIn
) -> None:
    live = stripe_standin.config(secret_key="sk_live_" + "a1B2c3D4e5F6g7H8")
    gql = GQL(app_factory(payment_provider="stripe", stripe=live))
    assert gql.ok(PROVIDER)["paymentProvider"]["notice"] is None


def test_capture_and_refund_through_stripe_move_the_totals_once(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, admin = paid_pledge(sgql, 4000)
    captured = sgql.ok(f.CAPTURE, {"id": pledge["id"]}, admin)["capturePayment"]
    assert captured["status"] == "CAPTURED"
    wait_until(lambda: outbox_drained(db), what="the totals settled")
    assert f.totals(sgql, pledge["campaign"]["id"]) == (4000, 1)
    # Stripe's events for what the API already did change nothing.
    stripe_standin.deliver()
    for event in stripe_standin.book.events:
        assert post(stripe_app, event).status_code == 200
    refunded = sgql.ok(f.REFUND, {"id": pledge["id"]}, admin)["refundPayment"]
    assert refunded["status"] == "REFUNDED"
    [refund_event] = events_of(stripe_standin, "charge.refunded")
    assert post(stripe_app, refund_event).json()["received"] is True
    wait_until(lambda: outbox_drained(db), what="the totals settled")
    assert f.totals(sgql, pledge["campaign"]["id"]) == (0, 0)
    assert [(e.kind, e.amount) for e in stripe_standin.effects()] == [
        ("authorize", 4000),
        ("capture", 4000),
        ("refund", 4000),
    ]
    history = sgql.ok(f.PLEDGE, {"id": pledge["id"]}, admin)["pledge"]["history"]
    assert [h["toStatus"] for h in history] == [
        "PENDING",
        "AUTHORIZED",
        "CAPTURED",
        "REFUNDED",
    ]


def test_events_alone_move_the_pledge_and_a_repeat_changes_nothing(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, admin = paid_pledge(sgql)
    # Captured in Stripe's dashboard: only the webhook tells.
    intent = stripe_standin.intent_for(pledge["id"])
    stripe_standin.book.handle(
        "POST", f"/v1/payment_intents/{intent['id']}/capture", {}
    )
    [succeeded] = events_of(stripe_standin, "payment_intent.succeeded")
    first = post(stripe_app, succeeded)
    assert first.json() == {"received": True, "duplicate": False}
    assert status(db, pledge["id"]) == "CAPTURED"
    again = post(stripe_app, succeeded)
    assert again.json() == {"received": True, "duplicate": True}
    history = sgql.ok(f.PLEDGE, {"id": pledge["id"]}, admin)["pledge"]["history"]
    assert [h["source"] for h in history][-1] == f"webhook:{succeeded['id']}"
    assert len(history) == 3


def test_a_late_authorization_after_the_capture_changes_nothing(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, _ = paid_pledge(sgql)
    intent = stripe_standin.intent_for(pledge["id"])
    stripe_standin.book.handle(
        "POST", f"/v1/payment_intents/{intent['id']}/capture", {}
    )
    [authorized] = events_of(stripe_standin, "payment_intent.amount_capturable_updated")
    [succeeded] = events_of(stripe_standin, "payment_intent.succeeded")
    assert post(stripe_app, succeeded).status_code == 200
    assert post(stripe_app, authorized).json()["received"] is True
    assert status(db, pledge["id"]) == "CAPTURED"


def test_a_declined_card_fails_the_pledge_with_stripes_reason(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    donor = f.register(sgql)
    campaign = f.campaign(sgql, f.admin(sgql).token)
    pledge = f.pledge(sgql, donor.token, campaign["id"], 2500)
    paid = sgql.ok(
        f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_chargeDeclined"}, donor.token
    )["authorizePayment"]
    assert (paid["status"], paid["failureReason"]) == (
        "FAILED",
        "Your card was declined.",
    )
    [failed] = events_of(stripe_standin, "payment_intent.payment_failed")
    assert post(stripe_app, failed).status_code == 200
    assert status(db, pledge["id"]) == "FAILED"


def test_an_unknown_payment_method_is_bad_input_and_charges_nothing(
    sgql: GQL, stripe_standin: StripeStandIn
) -> None:
    donor = f.register(sgql)
    campaign = f.campaign(sgql, f.admin(sgql).token)
    pledge = f.pledge(sgql, donor.token, campaign["id"], 2500)
    code = sgql.code(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    assert code == "BAD_USER_INPUT"
    assert stripe_standin.effects() == []


def test_stripe_unavailable_is_rate_limited_and_nothing_changes(
    sgql: GQL, stripe_standin: StripeStandIn, db: Database
) -> None:
    donor = f.register(sgql)
    campaign = f.campaign(sgql, f.admin(sgql).token)
    pledge = f.pledge(sgql, donor.token, campaign["id"], 2500)
    stripe_standin.fail_next("create", "500")
    body = sgql(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_visa"}, donor.token)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert status(db, pledge["id"]) == "PENDING"
    # Asked again, with the same key: authorized once.
    again = sgql.ok(
        f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_visa"}, donor.token
    )
    assert again["authorizePayment"]["status"] == "AUTHORIZED"
    keys = {c.idempotency_key for c in stripe_standin.calls("create")}
    assert keys == {f"careforall:{pledge['id']}:authorize"}
    assert len(stripe_standin.effects("authorize")) == 1


def test_a_canceled_authorization_fails_the_pledge(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, _ = paid_pledge(sgql)
    intent = stripe_standin.intent_for(pledge["id"])
    stripe_standin.book.handle("POST", f"/v1/payment_intents/{intent['id']}/cancel", {})
    [canceled] = events_of(stripe_standin, "payment_intent.canceled")
    assert post(stripe_app, canceled).status_code == 200
    with db.read() as session:
        row = session.get(Pledge, pledge["id"])
        assert row is not None
        assert (row.status, row.failure_reason) == (
            "FAILED",
            "The authorization was canceled before it was captured.",
        )


@pytest.mark.parametrize("fault", ["secret", "stale", "missing", "garbled"])
def test_a_bad_signature_is_400_and_changes_nothing(
    sgql: GQL,
    stripe_app: TestClient,
    stripe_standin: StripeStandIn,
    db: Database,
    fault: str,
) -> None:
    pledge, _ = paid_pledge(sgql)
    intent = stripe_standin.intent_for(pledge["id"])
    event = stripe_standin.event("payment_intent.succeeded", intent)
    payload = json.dumps(event)
    header = {
        "secret": sign("whsec_" + "someoneelse0123456789", payload),
        "stale": sign(WEBHOOK_SECRET, payload, int(time.time()) - 301),
        "missing": "",
        "garbled": "t=soon,v1",
    }[fault]
    response = stripe_app.post(
        URL, content=payload.encode(), headers={"Stripe-Signature": header}
    )
    assert response.status_code == 400
    assert status(db, pledge["id"]) == "AUTHORIZED"
    # Accepted as soon as it is signed right.
    assert post(stripe_app, event).status_code == 200
    assert status(db, pledge["id"]) == "CAPTURED"


def test_an_event_for_a_payment_intent_of_no_pledge_is_acknowledged_and_logged(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    stranger = {
        "id": "pi_fromtheshop",
        "object": "payment_intent",
        "amount": 1200,
        "currency": "usd",
        "metadata": {"order": "42"},
    }
    event = stripe_standin.event("payment_intent.succeeded", stranger)
    response = post(stripe_app, event)
    assert response.status_code == 200
    assert response.json()["ignored"] is True
    with db.read() as session:
        [row] = session.exec(
            select(WebhookLog).where(WebhookLog.event_id == event["id"])
        ).all()
    assert (row.outcome, row.status_code) == ("ignored", 200)
    assert row.reason == "no pledge for this PaymentIntent"


def test_a_mismatched_amount_is_not_applied_and_alerts_the_admins(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, _ = paid_pledge(sgql, 2500)
    intent = stripe_standin.intent_for(pledge["id"]) | {"amount": 2600}
    event = stripe_standin.event("payment_intent.succeeded", intent)
    assert post(stripe_app, event).status_code == 200
    assert status(db, pledge["id"]) == "AUTHORIZED"
    other = stripe_standin.intent_for(pledge["id"]) | {"currency": "eur"}
    assert post(stripe_app, stripe_standin.event("payment_intent.succeeded", other))
    assert status(db, pledge["id"]) == "AUTHORIZED"
    with db.read() as session:
        alerts = session.exec(
            select(Notification).where(Notification.pledge_id == pledge["id"])
        ).all()
        logged = session.exec(
            select(WebhookLog.outcome).where(WebhookLog.event_id == event["id"])
        ).all()
    # One alert (rate-limited), naming both amounts.
    [alert] = [a for a in alerts if a.kind == "WEBHOOKS_REJECTED"]
    assert "2600 USD" in alert.body and "2500 USD" in alert.body
    assert logged == ["rejected_unprocessable"]


def test_a_refund_event_finds_its_pledge_by_the_payment_intent(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, admin = paid_pledge(sgql)
    sgql.ok(f.CAPTURE, {"id": pledge["id"]}, admin)
    intent = stripe_standin.intent_for(pledge["id"])
    stripe_standin.book.handle("POST", "/v1/refunds", {"payment_intent": intent["id"]})
    [refunded] = events_of(stripe_standin, "charge.refunded")
    refunded["data"]["object"]["metadata"] = {}
    assert post(stripe_app, refunded).json()["duplicate"] is False
    assert status(db, pledge["id"]) == "REFUNDED"


def refund(standin: StripeStandIn, pledge_id: str, amount: int | None = None) -> Json:
    """Refund in Stripe's dashboard; returns the charge.refunded event."""
    intent = standin.intent_for(pledge_id)
    params = {"payment_intent": intent["id"]}
    if amount is not None:
        params["amount"] = str(amount)
    status, _ = standin.book.handle("POST", "/v1/refunds", params)
    assert status == 200
    return events_of(standin, "charge.refunded")[-1]


def counted(db: Database, pledge_id: str) -> tuple[str, int]:
    with db.read() as session:
        row = session.get(Pledge, pledge_id)
        assert row is not None
        return row.status, row.refunded_cents


def test_partial_refunds_lower_the_totals_by_exactly_their_amount(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, admin = paid_pledge(sgql, 3000)
    campaign_id = pledge["campaign"]["id"]
    sgql.ok(f.CAPTURE, {"id": pledge["id"]}, admin)
    first = refund(stripe_standin, pledge["id"], 1000)
    assert post(stripe_app, first).json() == {"received": True, "duplicate": False}
    assert counted(db, pledge["id"]) == ("CAPTURED", 1000)
    wait_until(lambda: outbox_drained(db), what="the totals settled")
    assert f.totals(sgql, campaign_id) == (2000, 1)
    second = refund(stripe_standin, pledge["id"], 500)
    # Repeated and out of order: Stripe's running sum decides, never twice.
    assert post(stripe_app, second).status_code == 200
    assert post(stripe_app, first).json()["duplicate"] is True
    assert post(stripe_app, first | {"id": "evt_replayed_elsewhere"}).status_code == 200
    assert counted(db, pledge["id"]) == ("CAPTURED", 1500)
    wait_until(lambda: outbox_drained(db), what="the totals settled")
    assert f.totals(sgql, campaign_id) == (1500, 1)
    shown = sgql.ok(
        "query($id: ID!) { pledge(id: $id) { status refundedCents } }",
        {"id": pledge["id"]},
        admin,
    )["pledge"]
    assert shown == {"status": "CAPTURED", "refundedCents": 1500}
    # Reconcile, which recounts from the pledges, agrees.
    assert totals.reconcile(UnitOfWork(db)) == []
    # The rest refunded (by the admin API): the pledge ends REFUNDED, at 0.
    assert sgql.ok(f.REFUND, {"id": pledge["id"]}, admin)["refundPayment"]
    assert [e.amount for e in stripe_standin.effects("refund")] == [1000, 500, 1500]
    assert post(stripe_app, events_of(stripe_standin, "charge.refunded")[-1])
    wait_until(lambda: outbox_drained(db), what="the totals settled")
    assert f.totals(sgql, campaign_id) == (0, 0)
    assert counted(db, pledge["id"])[0] == "REFUNDED"


def test_a_partial_refund_before_the_capture_event_captures_first(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, _ = paid_pledge(sgql, 3000)
    intent = stripe_standin.intent_for(pledge["id"])
    stripe_standin.book.handle(
        "POST", f"/v1/payment_intents/{intent['id']}/capture", {}
    )
    partial = refund(stripe_standin, pledge["id"], 700)
    assert post(stripe_app, partial).status_code == 200
    assert counted(db, pledge["id"]) == ("CAPTURED", 700)
    wait_until(lambda: outbox_drained(db), what="the totals settled")
    assert f.totals(sgql, pledge["campaign"]["id"]) == (2300, 1)


def test_events_not_handled_are_acknowledged(
    stripe_app: TestClient, stripe_standin: StripeStandIn
) -> None:
    event = stripe_standin.event("customer.created", {"id": "cus_1"})
    response = post(stripe_app, event)
    assert (response.status_code, response.json()["ignored"]) == (200, True)


def test_the_endpoint_is_absent_with_the_simulated_provider(client: TestClient) -> None:
    event = {"id": "evt_1", "type": "payment_intent.succeeded", "data": {}}
    assert post(client, event).status_code == 404


DISPUTE_QUERY = "query($id: ID!) { pledge(id: $id) { status disputeStatus } }"


def admin_notices(db: Database, pledge_id: str) -> list[str]:
    with db.read() as session:
        rows = session.exec(
            select(Notification)
            .where(Notification.pledge_id == pledge_id)
            .where(Notification.kind == "PAYMENT_DISPUTED")
        ).all()
        return sorted(row.title for row in rows)


@pytest.mark.parametrize(("outcome", "raised"), [("won", 3000), ("lost", 1000)])
def test_a_dispute_is_shown_to_admins_and_a_lost_one_lowers_the_totals(
    sgql: GQL,
    stripe_app: TestClient,
    stripe_standin: StripeStandIn,
    db: Database,
    outcome: str,
    raised: int,
) -> None:
    pledge, admin = paid_pledge(sgql, 3000)
    campaign_id = pledge["campaign"]["id"]
    sgql.ok(f.CAPTURE, {"id": pledge["id"]}, admin)
    intent = stripe_standin.intent_for(pledge["id"])
    dispute = stripe_standin.book.dispute(intent["id"], amount=2000)
    [opened] = events_of(stripe_standin, "charge.dispute.created")
    assert post(stripe_app, opened).json()["duplicate"] is False
    shown = sgql.ok(DISPUTE_QUERY, {"id": pledge["id"]}, admin)["pledge"]
    assert shown == {"status": "CAPTURED", "disputeStatus": "needs_response"}
    assert admin_notices(db, pledge["id"]) == ["A donor disputed a payment"]
    stripe_standin.book.close_dispute(dispute["id"], outcome)
    [closed] = events_of(stripe_standin, "charge.dispute.closed")
    assert post(stripe_app, closed).status_code == 200
    # Repeated, and the late "created" again: nothing moves twice or back.
    assert post(stripe_app, closed).json()["duplicate"] is True
    assert post(stripe_app, opened | {"id": "evt_created_again"}).status_code == 200
    shown = sgql.ok(DISPUTE_QUERY, {"id": pledge["id"]}, admin)["pledge"]
    assert shown == {"status": "CAPTURED", "disputeStatus": outcome}
    wait_until(lambda: outbox_drained(db), what="the totals settled")
    assert f.totals(sgql, campaign_id) == (raised, 1)
    assert totals.reconcile(UnitOfWork(db)) == []
    assert f"A dispute was closed: {outcome}" in admin_notices(db, pledge["id"])


def test_a_dispute_for_more_than_the_pledge_is_not_applied(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, admin = paid_pledge(sgql, 3000)
    sgql.ok(f.CAPTURE, {"id": pledge["id"]}, admin)
    intent = stripe_standin.intent_for(pledge["id"])
    stripe_standin.book.dispute(intent["id"], amount=3001)
    [opened] = events_of(stripe_standin, "charge.dispute.created")
    assert post(stripe_app, opened).status_code == 200
    shown = sgql.ok(DISPUTE_QUERY, {"id": pledge["id"]}, admin)["pledge"]
    assert shown["disputeStatus"] is None
    assert admin_notices(db, pledge["id"]) == []


PAYMENT = (
    "query($id: ID!) { pledge(id: $id) { payment { provider paymentIntentId "
    "dashboardUrl } } }"
)


def test_admins_see_the_payment_intent_with_a_dashboard_link(
    sgql: GQL, stripe_standin: StripeStandIn
) -> None:
    donor = f.register(sgql)
    admin = f.admin(sgql).token
    campaign = f.campaign(sgql, admin)
    pledge = f.pledge(sgql, donor.token, campaign["id"], 2500)
    shown = sgql.ok(PAYMENT, {"id": pledge["id"]}, admin)["pledge"]["payment"]
    assert shown == {
        "provider": "stripe",
        "paymentIntentId": None,
        "dashboardUrl": None,
    }
    sgql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_visa"}, donor.token)
    intent = stripe_standin.intent_for(pledge["id"])["id"]
    shown = sgql.ok(PAYMENT, {"id": pledge["id"]}, admin)["pledge"]["payment"]
    assert shown == {
        "provider": "stripe",
        "paymentIntentId": intent,
        "dashboardUrl": f"https://dashboard.stripe.com/test/payments/{intent}",
    }
    # The donor sees their pledge, not the provider's side of it.
    assert sgql.ok(PAYMENT, {"id": pledge["id"]}, donor.token)["pledge"] == {
        "payment": None
    }


def test_with_the_simulation_admins_see_the_provider_only(gql: GQL) -> None:
    admin = f.admin(gql).token
    donor = f.register(gql)
    pledge = f.pledge(gql, donor.token, f.campaign(gql, admin)["id"], 2500)
    shown = gql.ok(PAYMENT, {"id": pledge["id"]}, admin)["pledge"]["payment"]
    assert shown == {
        "provider": "simulated",
        "paymentIntentId": None,
        "dashboardUrl": None,
    }


CANCEL = "mutation($id: ID!) { cancelPayment(pledgeId: $id) { status failureReason } }"
CANCELED_REASON = "The authorization was canceled before it was captured."


def test_an_admin_cancels_an_uncaptured_authorization_at_stripe(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, admin = paid_pledge(sgql, 2500)
    canceled = sgql.ok(CANCEL, {"id": pledge["id"]}, admin)["cancelPayment"]
    assert canceled == {"status": "FAILED", "failureReason": CANCELED_REASON}
    assert [e.kind for e in stripe_standin.effects()] == ["authorize", "cancel"]
    keys = {c.idempotency_key for c in stripe_standin.calls("cancel")}
    assert keys == {f"careforall:{pledge['id']}:cancel"}
    [event] = events_of(stripe_standin, "payment_intent.canceled")
    assert post(stripe_app, event).json()["received"] is True
    assert status(db, pledge["id"]) == "FAILED"
    # A captured pledge has no authorization left to cancel.
    other, _ = paid_pledge(sgql, 2500)
    sgql.ok(f.CAPTURE, {"id": other["id"]}, admin)
    assert sgql.code(CANCEL, {"id": other["id"]}, admin) == "INVALID_TRANSITION"
    assert stripe_standin.intent_for(other["id"])["status"] == "succeeded"


def test_an_admin_cancels_a_simulated_authorization(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    gql = GQL(app_factory(auto_capture=False))
    admin = f.admin(gql).token
    donor = f.register(gql)
    pledge = f.pledge(gql, donor.token, f.campaign(gql, admin)["id"], 2500)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    canceled = gql.ok(CANCEL, {"id": pledge["id"]}, admin)["cancelPayment"]
    assert canceled == {"status": "FAILED", "failureReason": CANCELED_REASON}
    wait_until(lambda: settled(db), what="the simulated webhooks delivered")
    assert status(db, pledge["id"]) == "FAILED"
    assert f.totals(gql, pledge["campaign"]["id"]) == (0, 0)


AUDIT = "query { auditLog(first: 5) { edges { node { action targetId } } } }"


def test_a_cancel_is_in_the_audit_log(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn
) -> None:
    pledge, admin = paid_pledge(sgql, 2500)
    sgql.ok(CANCEL, {"id": pledge["id"]}, admin)
    edges = sgql.ok(AUDIT, {}, admin)["auditLog"]["edges"]
    assert {"action": "cancel", "targetId": pledge["id"]} in [e["node"] for e in edges]


REFUND_PART = (
    "mutation($id: ID!, $cents: Int) { refundPayment(pledgeId: $id, "
    "amountCents: $cents) { status refundedCents } }"
)


def test_an_admin_refunds_part_of_a_pledge_once_whatever_the_retries(
    sgql: GQL, stripe_app: TestClient, stripe_standin: StripeStandIn, db: Database
) -> None:
    pledge, admin = paid_pledge(sgql, 3000)
    campaign_id = pledge["campaign"]["id"]
    sgql.ok(f.CAPTURE, {"id": pledge["id"]}, admin)
    # Stripe refunds but its answer is lost: asked again, the same refund.
    stripe_standin.hold_seconds = 3.0
    stripe_standin.fail_next("refund", "timeout")
    variables = {"id": pledge["id"], "cents": 1000}
    assert sgql.code(REFUND_PART, variables, admin) == "RATE_LIMITED"
    done = sgql.ok(REFUND_PART, variables, admin)["refundPayment"]
    assert done == {"status": "CAPTURED", "refundedCents": 1000}
    assert [e.amount for e in stripe_standin.effects("refund")] == [1000]
    keys = {c.idempotency_key for c in stripe_standin.calls("refund")}
    assert keys == {f"careforall:{pledge['id']}:refund:1000"}
    # Its webhook changes nothing more.
    [event] = events_of(stripe_standin, "charge.refunded")
    assert post(stripe_app, event).status_code == 200
    wait_until(lambda: outbox_drained(db), what="the totals settled")
    assert f.totals(sgql, campaign_id) == (2000, 1)
    # More than is left is refused; all that is left is a whole refund.
    too_much = {"id": pledge["id"], "cents": 2001}
    assert sgql.code(REFUND_PART, too_much, admin) == "BAD_USER_INPUT"
    rest = sgql.ok(REFUND_PART, {"id": pledge["id"], "cents": 2000}, admin)
    assert rest["refundPayment"]["status"] == "REFUNDED"
    assert [e.amount for e in stripe_standin.effects("refund")] == [1000, 2000]
    wait_until(lambda: outbox_drained(db), what="the totals settled")
    assert f.totals(sgql, campaign_id) == (0, 0)


def test_the_simulated_provider_refunds_whole_payments_only(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    gql = GQL(app_factory())
    admin = f.admin(gql).token
    donor = f.register(gql)
    pledge = f.pledge(gql, donor.token, f.campaign(gql, admin)["id"], 2500)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    wait_until(lambda: status(db, pledge["id"]) == "CAPTURED", what="captured")
    variables = {"id": pledge["id"], "cents": 1000}
    assert gql.code(REFUND_PART, variables, admin) == "INVALID_TRANSITION"
    assert status(db, pledge["id"]) == "CAPTURED"

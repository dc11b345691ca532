"""POST /webhooks/payments: signatures, dedupe by event id, the lenient machine,
and refusals that change nothing (contract.md, "Payment webhooks")."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlmodel import col, func, select
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.models import (
    OutboxEvent,
    Pledge,
    PledgeTransition,
    SimWebhook,
    WebhookEvent,
    WebhookLog,
)
from careforall.payments.signature import sign
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.outbox import outbox_drained
from tests.helpers.waiting import wait_until

URL = "/webhooks/payments"
OK = {"received": True, "duplicate": False}
DUPLICATE = {"received": True, "duplicate": True}
WEBHOOK = "webhook:{}"  # the history source of a provider event


# --- helpers ---------------------------------------------------------------


event = f.provider_event
secret_of = f.webhook_secret
post = f.post_webhook


@dataclass(frozen=True)
class Snapshot:
    """Everything a webhook may change for one pledge."""

    status: str
    failure_reason: str | None
    history: list[tuple[str | None, str, str]]
    webhook_ids: list[str]
    outbox_rows: int


def snapshot(db: Database, pledge_id: str) -> Snapshot:
    with db.read() as session:
        pledge = session.get(Pledge, pledge_id)
        assert pledge is not None
        history = session.exec(
            select(PledgeTransition)
            .where(PledgeTransition.pledge_id == pledge_id)
            .order_by(col(PledgeTransition.id))
        ).all()
        webhook_ids = session.exec(
            select(WebhookEvent.event_id).where(WebhookEvent.pledge_id == pledge_id)
        ).all()
        outbox_rows = session.exec(select(func.count()).select_from(OutboxEvent)).one()
    return Snapshot(
        status=pledge.status,
        failure_reason=pledge.failure_reason,
        history=[(h.from_status, h.to_status, h.source) for h in history],
        webhook_ids=sorted(webhook_ids),
        outbox_rows=outbox_rows,
    )


def webhook_rows(db: Database) -> int:
    with db.read() as session:
        count: int = session.exec(select(func.count()).select_from(WebhookEvent)).one()
    return count


def settled_totals(gql: GQL, db: Database, campaign_id: str) -> tuple[int, int]:
    """The campaign's totals once every committed event has been delivered."""
    wait_until(lambda: outbox_drained(db))
    return f.totals(gql, campaign_id)


@dataclass
class Setup:
    gql: GQL
    client: TestClient
    organiser: str
    campaign_id: str
    donor: str

    def new_campaign(self) -> str:
        campaign_id: str = f.campaign(self.gql, self.organiser)["id"]
        return campaign_id

    def new_pledge(
        self, amount: int = 2500, campaign_id: str | None = None
    ) -> dict[str, Any]:
        return f.pledge(
            self.gql, self.donor, campaign_id or self.campaign_id, amount=amount
        )


@pytest.fixture
def manual(app_factory: Callable[..., TestClient]) -> Setup:
    """An app without auto-capture, a campaign, and a donor to make PENDING pledges."""
    client = app_factory(auto_capture=False)
    gql = GQL(client)
    organiser = f.register(gql).token
    campaign_id = f.campaign(gql, organiser)["id"]
    return Setup(gql, client, organiser, campaign_id, f.anonymous(gql))


# --- signature and timestamp -----------------------------------------------


def _changed(body: bytes, old: bytes, new: bytes) -> bytes:
    assert old in body
    return body.replace(old, new)


def test_processed_event_is_acknowledged_and_applied(
    manual: Setup, db: Database
) -> None:
    pledge = manual.new_pledge()
    evt = event(pledge, "authorized")

    response = post(manual.client, evt)

    assert response.status_code == 200
    assert response.json() == OK
    after = snapshot(db, pledge["id"])
    assert after.status == "AUTHORIZED"
    assert after.history[1:] == [("PENDING", "AUTHORIZED", WEBHOOK.format(evt["id"]))]
    assert after.webhook_ids == [evt["id"]]


def _now() -> int:
    return int(time.time())


def _retimed(header: str) -> str:
    """The same v1 under another t: a replayed signature with a fresh time."""
    t, v1 = header.split(",")
    return f"t={int(t.removeprefix('t=')) - 5},{v1}"


# name -> post() keyword arguments, given the raw body and the real secret
UNVERIFIED: dict[str, Callable[[bytes, str], dict[str, Any]]] = {
    "wrong-secret": lambda body, secret: {"secret": "not-the-webhook-secret"},
    "stale-301s": lambda body, secret: {"timestamp": _now() - 301},
    "future-301s": lambda body, secret: {"timestamp": _now() + 301},
    "stale-and-forged": lambda body, secret: {
        "header": sign("forged", body, timestamp=_now() - 3600)
    },
    "missing-header": lambda body, secret: {"signed": False},
    "empty-header": lambda body, secret: {"header": ""},
    "no-timestamp": lambda body, secret: {"header": "v1=" + "0" * 64},
    "no-v1": lambda body, secret: {"header": f"t={_now()}"},
    "bad-timestamp": lambda body, secret: {"header": "t=soon,v1=" + "0" * 64},
    "v1-of-wrong-length": lambda body, secret: {"header": sign(secret, body)[:-2]},
    # A valid signature, but of another body (the type changed in transit).
    "signature-of-other-body": lambda body, secret: {
        "header": sign(secret, _changed(body, b"payment.captured", b"payment.refunded"))
    },
    # The right signature, with its timestamp moved (replaying an old signature).
    "timestamp-swapped": lambda body, secret: {"header": _retimed(sign(secret, body))},
}


def test_unverified_delivery_is_400_and_changes_nothing(
    manual: Setup, db: Database
) -> None:
    secret = secret_of(manual.client)
    for name, tamper in UNVERIFIED.items():
        pledge = manual.new_pledge()
        body = json.dumps(event(pledge, "captured")).encode()
        before = snapshot(db, pledge["id"])

        response = post(manual.client, body, **tamper(body, secret))

        assert response.status_code == 400, (name, response.text)
        assert response.json()["received"] is False, name
        assert snapshot(db, pledge["id"]) == before, name
        assert before.status == "PENDING"
    assert webhook_rows(db) == 0
    assert settled_totals(manual.gql, db, manual.campaign_id) == (0, 0)


def test_timestamp_inside_the_tolerance_is_accepted(
    manual: Setup, db: Database
) -> None:
    """The 300 s window is a window, not a refusal of everything old."""
    past, future = manual.new_pledge(), manual.new_pledge()

    old = post(
        manual.client, event(past, "authorized"), timestamp=int(time.time()) - 290
    )
    ahead = post(
        manual.client, event(future, "authorized"), timestamp=int(time.time()) + 290
    )

    assert (old.status_code, ahead.status_code) == (200, 200)
    assert snapshot(db, past["id"]).status == "AUTHORIZED"
    assert snapshot(db, future["id"]).status == "AUTHORIZED"


# --- malformed bodies ------------------------------------------------------


def _valid(pledge: dict[str, Any]) -> dict[str, Any]:
    return event(pledge, "captured")


def _without(key: str) -> Callable[[dict[str, Any]], bytes]:
    def build(pledge: dict[str, Any]) -> bytes:
        body = _valid(pledge)
        del body[key]
        return json.dumps(body).encode()

    return build


def _data_with(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    def build(pledge: dict[str, Any]) -> bytes:
        body = _valid(pledge)
        body["data"] = {**body["data"], **changes}
        body["data"] = {k: v for k, v in body["data"].items() if v is not _DROP}
        return json.dumps(body).encode()

    return build


def _top_with(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    def build(pledge: dict[str, Any]) -> bytes:
        return json.dumps({**_valid(pledge), **changes}).encode()

    return build


_DROP = object()

MALFORMED: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "empty": lambda p: b"",
    "not-json": lambda p: b"{not json",
    "truncated-json": lambda p: json.dumps(_valid(p)).encode()[:-5],
    "not-utf8": lambda p: b"\xff\xfe\x00{",
    "json-array": lambda p: json.dumps([_valid(p)]).encode(),
    "json-string": lambda p: b'"payment.captured"',
    "json-null": lambda p: b"null",
    "no-id": _without("id"),
    "no-type": _without("type"),
    "no-data": _without("data"),
    "id-not-string": _top_with(id=12345),
    "id-empty": _top_with(id=""),
    "id-too-long": _top_with(id="e" * 121),
    "type-not-string": _top_with(type=["payment.captured"]),
    "data-not-object": _top_with(data="plg_1"),
    "data-null": _top_with(data=None),
    "no-pledge-id": _data_with(pledgeId=_DROP),
    "pledge-id-number": _data_with(pledgeId=7),
    "amount-string": _data_with(amountCents="2500"),
    "amount-float": _data_with(amountCents=2500.0),
    "amount-bool": _data_with(amountCents=True),
    "amount-missing": _data_with(amountCents=_DROP),
    "currency-number": _data_with(currency=840),
    "currency-missing": _data_with(currency=_DROP),
}


def test_malformed_body_is_400_and_changes_nothing(manual: Setup, db: Database) -> None:
    for name, build in MALFORMED.items():
        pledge = manual.new_pledge()
        before = snapshot(db, pledge["id"])

        # Correctly signed: only the shape is wrong.
        response = post(manual.client, build(pledge))

        assert response.status_code == 400, (name, response.text)
        assert response.json()["received"] is False, name
        assert snapshot(db, pledge["id"]) == before, name
    assert webhook_rows(db) == 0


def test_oversized_body_is_refused_without_a_5xx(manual: Setup, db: Database) -> None:
    pledge = manual.new_pledge()
    body = _valid(pledge) | {"padding": "x" * 70_000}

    response = post(manual.client, body)

    assert 400 <= response.status_code < 500
    assert snapshot(db, pledge["id"]).status == "PENDING"
    assert webhook_rows(db) == 0


# --- duplicates ------------------------------------------------------------


def test_repeated_event_id_is_a_duplicate_and_applies_once(
    manual: Setup, db: Database
) -> None:
    pledge = manual.new_pledge(amount=4200)
    evt = event(pledge, "captured")

    first = post(manual.client, evt)
    assert settled_totals(manual.gql, db, manual.campaign_id) == (4200, 1)
    outbox_after_first = snapshot(db, pledge["id"]).outbox_rows
    again = [post(manual.client, evt) for _ in range(3)]

    assert first.json() == OK
    assert [(r.status_code, r.json()) for r in again] == [(200, DUPLICATE)] * 3
    after = snapshot(db, pledge["id"])
    source = WEBHOOK.format(evt["id"])
    assert after.history == [
        (None, "PENDING", "api"),
        ("PENDING", "AUTHORIZED", source),
        ("AUTHORIZED", "CAPTURED", source),
    ]
    assert after.webhook_ids == [evt["id"]]
    assert after.outbox_rows == outbox_after_first  # a duplicate emits nothing
    assert settled_totals(manual.gql, db, manual.campaign_id) == (4200, 1)


def test_dedupe_is_by_event_id_not_by_body(manual: Setup, db: Database) -> None:
    """A second body under an id already seen is still a duplicate: nothing changes."""
    pledge = manual.new_pledge()
    authorized = event(pledge, "authorized")
    post(manual.client, authorized)
    before = snapshot(db, pledge["id"])

    response = post(manual.client, event(pledge, "captured", event_id=authorized["id"]))

    assert (response.status_code, response.json()) == (200, DUPLICATE)
    assert snapshot(db, pledge["id"]) == before
    assert before.status == "AUTHORIZED"


# --- out of order and late events ----------------------------------------


def test_captured_before_authorized_records_both_steps(
    manual: Setup, db: Database
) -> None:
    pledge = manual.new_pledge(amount=1500)
    captured = event(pledge, "captured")

    response = post(manual.client, captured)

    assert response.json() == OK
    after = snapshot(db, pledge["id"])
    source = WEBHOOK.format(captured["id"])
    assert after.status == "CAPTURED"
    assert after.history[1:] == [
        ("PENDING", "AUTHORIZED", source),
        ("AUTHORIZED", "CAPTURED", source),
    ]

    late = event(pledge, "authorized")
    response = post(manual.client, late)

    assert (response.status_code, response.json()) == (200, OK)
    final = snapshot(db, pledge["id"])
    assert final.status == "CAPTURED"
    assert final.history == after.history
    assert final.outbox_rows == after.outbox_rows
    # The late event is still recorded, so a redelivery of it is a duplicate.
    assert final.webhook_ids == sorted([captured["id"], late["id"]])
    assert post(manual.client, late).json() == DUPLICATE
    assert settled_totals(manual.gql, db, manual.campaign_id) == (1500, 1)


LATE_CASES: list[tuple[str, list[str], int, str, list[str], tuple[int, int]]] = [
    # (name, events in arrival order, how many of the first ones move the
    #  pledge, final status, states recorded after PENDING, settled totals)
    ("captured-then-authorized", ["captured", "authorized"], 1,
     "CAPTURED", ["AUTHORIZED", "CAPTURED"], (2500, 1)),
    ("captured-then-failed", ["captured", "failed"], 1,
     "CAPTURED", ["AUTHORIZED", "CAPTURED"], (2500, 1)),
    ("refunded-then-captured", ["refunded", "captured"], 1,
     "REFUNDED", ["AUTHORIZED", "CAPTURED", "REFUNDED"], (0, 0)),
    ("refunded-then-earlier", ["refunded", "authorized", "failed"], 1,
     "REFUNDED", ["AUTHORIZED", "CAPTURED", "REFUNDED"], (0, 0)),
    ("failed-then-captured", ["failed", "captured"], 1, "FAILED", ["FAILED"], (0, 0)),
    ("failed-then-others", ["failed", "authorized", "refunded"], 1,
     "FAILED", ["FAILED"], (0, 0)),
    ("authorized-failed-captured", ["authorized", "failed", "captured"], 2,
     "FAILED", ["AUTHORIZED", "FAILED"], (0, 0)),
    ("refunded-then-late-pair", ["captured", "refunded", "captured", "authorized"], 2,
     "REFUNDED", ["AUTHORIZED", "CAPTURED", "REFUNDED"], (0, 0)),
]  # fmt: skip


def test_late_events_never_move_a_pledge_backwards(manual: Setup, db: Database) -> None:
    for name, kinds, moving, status, path, totals in LATE_CASES:
        campaign_id = manual.new_campaign()
        pledge = manual.new_pledge(amount=2500, campaign_id=campaign_id)
        events = [event(pledge, kind) for kind in kinds]

        responses = [post(manual.client, evt) for evt in events]

        assert [(r.status_code, r.json()) for r in responses] == [(200, OK)] * len(
            events
        ), name
        after = snapshot(db, pledge["id"])
        assert after.status == status, name
        assert [to for _, to, _ in after.history] == ["PENDING", *path], name
        # The late events were answered 200 but left no trace in the history.
        sources = {source for _, _, source in after.history[1:]}
        assert sources == {WEBHOOK.format(evt["id"]) for evt in events[:moving]}, name
        assert after.webhook_ids == sorted(evt["id"] for evt in events), name
        assert settled_totals(manual.gql, db, campaign_id) == totals, name


def test_failed_event_records_a_reason_and_is_terminal(
    manual: Setup, db: Database
) -> None:
    pledge = manual.new_pledge()

    post(manual.client, event(pledge, "failed"))

    after = snapshot(db, pledge["id"])
    assert after.status == "FAILED"
    assert after.failure_reason
    assert after.history[1:] == [("PENDING", "FAILED", after.history[1][2])]


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("Your card was declined.", "Your card was declined."),
        (None, "The payment provider declined the payment."),
    ],
)
def test_failed_event_keeps_the_providers_reason(
    manual: Setup, db: Database, reason: str | None, shown: str
) -> None:
    pledge = manual.new_pledge()
    body = event(pledge, "failed")
    if reason is not None:
        body["data"]["reason"] = reason
    assert post(manual.client, body).status_code == 200
    assert snapshot(db, pledge["id"]).failure_reason == shown


@pytest.mark.parametrize("start", ["PENDING", "AUTHORIZED"])
def test_refunded_implies_every_missing_step_and_totals_never_go_negative(
    manual: Setup, db: Database, start: str
) -> None:
    counted = manual.new_pledge(amount=1000)
    post(manual.client, event(counted, "captured"))
    assert settled_totals(manual.gql, db, manual.campaign_id) == (1000, 1)
    pledge = manual.new_pledge(amount=2500)
    if start == "AUTHORIZED":
        post(manual.client, event(pledge, "authorized"))

    refunded = event(pledge, "refunded")
    observed: list[tuple[int, int]] = []
    response = post(manual.client, refunded)
    while not outbox_drained(db):
        observed.append(f.totals(manual.gql, manual.campaign_id))
    observed.append(f.totals(manual.gql, manual.campaign_id))

    assert response.json() == OK
    after = snapshot(db, pledge["id"])
    assert after.status == "REFUNDED"
    source = WEBHOOK.format(refunded["id"])
    steps = [
        ("PENDING", "AUTHORIZED"),
        ("AUTHORIZED", "CAPTURED"),
        ("CAPTURED", "REFUNDED"),
    ]
    expected = steps if start == "PENDING" else steps[1:]
    assert [(a, b) for a, b, s in after.history if s == source] == expected
    # The refunded pledge was counted and uncounted in one step: the other
    # pledge's share is all the totals ever show.
    assert set(observed) == {(1000, 1)}
    assert settled_totals(manual.gql, db, manual.campaign_id) == (1000, 1)


# --- refusals that change nothing (422) ----------------------------------


MISMATCHES: dict[str, dict[str, Any]] = {
    "amount-lower": {"amount": 2499},
    "amount-higher": {"amount": 250_000},
    "amount-zero": {"amount": 0},
    "amount-negative": {"amount": -2500},
    "currency": {"currency": "EUR"},
    "currency-lowercase": {"currency": "usd"},
}


def test_amount_or_currency_unlike_the_pledge_is_422_and_changes_nothing(
    manual: Setup, db: Database
) -> None:
    for kind in ("authorized", "captured", "refunded", "failed"):
        for name, change in MISMATCHES.items():
            pledge = manual.new_pledge(amount=2500)
            before = snapshot(db, pledge["id"])

            response = post(manual.client, event(pledge, kind, **change))

            assert response.status_code == 422, (kind, name, response.text)
            assert response.json()["received"] is False
            assert snapshot(db, pledge["id"]) == before, (kind, name)
    assert webhook_rows(db) == 0
    assert settled_totals(manual.gql, db, manual.campaign_id) == (0, 0)


def test_unknown_pledge_is_422_and_changes_nothing(manual: Setup, db: Database) -> None:
    pledge = manual.new_pledge()
    before = snapshot(db, pledge["id"])
    ghost = {"id": "plg_does_not_exist", "amountCents": 2500, "currency": "USD"}

    response = post(manual.client, event(ghost, "captured"))

    assert response.status_code == 422, response.text
    assert snapshot(db, pledge["id"]) == before
    assert webhook_rows(db) == 0


def test_a_rejected_event_id_is_not_recorded(manual: Setup, db: Database) -> None:
    """A 422 records nothing, so the same event is refused again rather than
    answered as a duplicate; nothing about it is remembered."""
    pledge = manual.new_pledge(amount=2500)
    wrong = event(pledge, "captured", amount=9999)
    before = snapshot(db, pledge["id"])

    first = post(manual.client, wrong)
    second = post(manual.client, wrong)

    assert (first.status_code, second.status_code) == (422, 422)
    assert second.json()["received"] is False
    assert snapshot(db, pledge["id"]) == before
    assert webhook_rows(db) == 0
    # Since the id was never recorded, it is not burnt either: an event that
    # does match the pledge under that id is processed normally.
    corrected = event(pledge, "captured", event_id=wrong["id"])
    assert post(manual.client, corrected).json() == OK
    assert snapshot(db, pledge["id"]).status == "CAPTURED"


def test_unknown_event_type_is_acknowledged_and_changes_nothing(
    manual: Setup, db: Database
) -> None:
    """Not in the contract's list: answered 2xx so a provider stops retrying, inert."""
    pledge = manual.new_pledge()
    before = snapshot(db, pledge["id"])

    response = post(manual.client, event(pledge, "disputed"))

    assert response.status_code == 200
    assert response.json()["received"] is True
    assert snapshot(db, pledge["id"]) == before


# --- the simulated provider's own webhooks -------------------------------


def _webhook_types(db: Database, pledge_id: str) -> list[str]:
    with db.read() as session:
        rows = session.exec(
            select(WebhookEvent.type)
            .where(WebhookEvent.pledge_id == pledge_id)
            .order_by(col(WebhookEvent.received_at))
        ).all()
    return list(rows)


def _undelivered(db: Database) -> int:
    with db.read() as session:
        count: int = session.exec(
            select(func.count())
            .select_from(SimWebhook)
            .where(SimWebhook.delivered_at == None)  # noqa: E711
        ).one()
    return count


def test_simulated_provider_delivers_signed_webhooks_that_change_nothing_more(
    gql: GQL, db: Database
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"], amount=3100)

    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)

    wait_until(lambda: len(_webhook_types(db, pledge["id"])) >= 2)
    types = _webhook_types(db, pledge["id"])
    assert types == ["payment.authorized", "payment.captured"]
    wait_until(lambda: _undelivered(db) == 0)
    after = snapshot(db, pledge["id"])
    assert after.status == "CAPTURED"
    # The API's answer and the webhook went through the same machine: each step once.
    assert [(a, b) for a, b, _ in after.history] == [
        (None, "PENDING"),
        ("PENDING", "AUTHORIZED"),
        ("AUTHORIZED", "CAPTURED"),
    ]
    assert settled_totals(gql, db, campaign["id"]) == (3100, 1)


def test_simulated_decline_is_delivered_as_payment_failed(
    gql: GQL, db: Database
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])

    paid = gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_declined"}, donor)

    assert paid["authorizePayment"]["status"] == "FAILED"
    assert wait_until(lambda: _webhook_types(db, pledge["id"])) == ["payment.failed"]
    wait_until(lambda: _undelivered(db) == 0)
    after = snapshot(db, pledge["id"])
    assert [(a, b) for a, b, _ in after.history] == [
        (None, "PENDING"),
        ("PENDING", "FAILED"),
    ]
    assert settled_totals(gql, db, campaign["id"]) == (0, 0)


# --- a flood of forged webhooks ---------------------------------------------


def _log_rows(db: Database) -> list[tuple[str, str | None]]:
    with db.read() as session:
        rows = session.exec(
            select(WebhookLog.outcome, WebhookLog.reason).order_by(col(WebhookLog.id))
        ).all()
    return [(outcome, reason) for outcome, reason in rows]


def _counted(reason: str | None = None) -> float:
    """Refusals for the signature (all, or of one reason) counted so far."""
    if reason is None:
        name, labels = (
            "careforall_webhooks_received_total",
            {"outcome": "rejected_signature"},
        )
    else:
        name, labels = "careforall_webhook_signature_failures_total", {"reason": reason}
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_forged_webhooks_are_counted_and_sampled_not_logged_one_row_each(
    manual: Setup, db: Database
) -> None:
    pledge = manual.new_pledge()
    forged = event(pledge, "captured")
    refused, mismatched = _counted(), _counted("mismatch")
    for _ in range(50):
        assert post(manual.client, forged, secret="forged").status_code == 400
    for _ in range(5):
        assert post(manual.client, forged, signed=False).status_code == 400
    for _ in range(5):
        answer = manual.client.post(URL, content=b"x" * (65 * 1024))
        assert answer.status_code == 413

    rows = _log_rows(db)
    # The first of each reason, and one more when the burst reached the
    # alert's threshold, saying how many were left out before it.
    assert rows[:2] == [
        ("rejected_signature", "signature does not match"),
        (
            "rejected_signature",
            "signature does not match (+8 more not logged since the last row)",
        ),
    ]
    assert rows[2:] == [
        ("rejected_signature", "missing CareForAll-Signature header"),
        ("rejected_too_large", "body is too large"),
    ]
    # Prometheus counts every one.
    assert _counted() - refused == 55
    assert _counted("mismatch") - mismatched == 50
    # The admin's count is exact, from the process's own counts.
    admin = f.admin(manual.gql)
    stats = manual.gql.ok(
        "{ adminStats { webhookRejectsLastHour } }", token=admin.token
    )
    assert stats["adminStats"]["webhookRejectsLastHour"] == 60
    # And the admins heard of the flood.
    notes = manual.gql.ok(
        "{ notifications(first: 5) { edges { node { kind body } } } }",
        token=admin.token,
    )["notifications"]["edges"]
    assert [n["node"]["kind"] for n in notes] == ["WEBHOOKS_REJECTED"]
    assert "keeps a sample of them" in notes[0]["node"]["body"]

    # A real event is still logged in full.
    real = event(pledge, "authorized")
    assert post(manual.client, real).json() == OK
    with db.read() as session:
        logged = session.exec(
            select(WebhookLog).where(WebhookLog.event_id == real["id"])
        ).one()
    assert (logged.outcome, logged.pledge_id) == ("processed", pledge["id"])

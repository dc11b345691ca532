"""Contract rules that span layers: kept secrets, kept totals, readiness,
webhook-first ordering, idempotency keys' lifetime, roles as they are now."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from sqlalchemy import text, update
from sqlmodel import col
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.models import Pledge
from careforall.payments.simulated import SimulatedProvider
from tests import factories as f
from tests.helpers.api import ADMIN_EMAIL, GQL
from tests.helpers.waiting import wait_until

CAMPAIGN_TOTALS = """query($id: ID!) {
  campaign(id: $id) { totals { raisedCents pledgeCount } }
  campaignTotals(campaignId: $id) { raisedCents pledgeCount }
}"""


def _sql(db: Database, statement: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_totals_are_read_from_the_kept_table_and_repaired_at_start(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    gql = GQL(app_factory())
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    _sql(db, "UPDATE campaign_totals SET raised_cents = 12345, pledge_count = 7")
    data = gql.ok(CAMPAIGN_TOTALS, {"id": campaign["id"]})
    # Served from the table as it stands: never summed from pledges per request.
    assert data["campaignTotals"] == {"raisedCents": 12345, "pledgeCount": 7}
    assert data["campaign"]["totals"] == {"raisedCents": 12345, "pledgeCount": 7}

    restarted = GQL(app_factory())  # a new start reconciles totals with pledges
    data = restarted.ok(CAMPAIGN_TOTALS, {"id": campaign["id"]})
    assert data["campaignTotals"] == {"raisedCents": 0, "pledgeCount": 0}


def test_the_webhook_secret_is_kept_across_restarts(
    app_factory: Callable[..., TestClient],
) -> None:
    first = app_factory()
    second = app_factory()  # same database, as after a restart
    assert f.webhook_secret(first) == f.webhook_secret(second)
    gql = GQL(second)
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    pledge = f.pledge(gql, f.anonymous(gql), campaign["id"])
    body = f.provider_event(pledge, "authorized")
    response = f.post_webhook(second, body, secret=f.webhook_secret(first))
    assert response.status_code == 200


def test_configured_secrets_are_the_ones_used(
    app_factory: Callable[..., TestClient],
) -> None:
    stored = f.webhook_secret(app_factory())
    client = app_factory(webhook_secret="whsec_configured", jwt_secret="j" * 64)
    gql = GQL(client)
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    pledge = f.pledge(gql, f.anonymous(gql), campaign["id"])
    configured = f.post_webhook(
        client, f.provider_event(pledge, "authorized"), secret="whsec_configured"
    )
    assert configured.status_code == 200
    refused = f.post_webhook(
        client, f.provider_event(pledge, "captured"), secret=stored
    )
    assert refused.status_code == 400
    # Tokens are signed with the configured JWT secret.
    claims = jwt.decode(owner.token, "j" * 64, algorithms=["HS256"])
    assert claims["sub"] == owner.id


def test_readyz_is_false_when_the_outbox_task_stops(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    state = client.app.state  # type: ignore[attr-defined]

    async def stop_dispatcher() -> None:
        for task in asyncio.all_tasks():
            if task.get_name() == "outbox-dispatcher":
                task.cancel()

    client.portal.call(stop_dispatcher)  # type: ignore[union-attr]
    wait_until(lambda: not state.dispatcher.alive)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["outbox"] is False


def test_admin_bootstrap_needs_both_variables(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    app_factory(admin_password=None)
    with db.engine.connect() as conn:
        admins = conn.execute(
            text("SELECT count(*) FROM users WHERE email = :e"), {"e": ADMIN_EMAIL}
        ).scalar()
    assert admins == 0


def test_idempotency_keys_still_hold_after_a_day(gql: GQL, db: Database) -> None:
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    donor = f.anonymous(gql)
    first = f.pledge(gql, donor, campaign["id"], amount=700, idempotencyKey="day-old")
    with db.engine.begin() as conn:
        conn.execute(
            update(Pledge)
            .where(col(Pledge.id) == first["id"])
            .values(created_at=utcnow() - timedelta(hours=25))
        )
    again = f.pledge(gql, donor, campaign["id"], amount=700, idempotencyKey="day-old")
    assert again["id"] == first["id"]
    code = gql.code(
        f.CREATE_PLEDGE,
        {
            "input": {
                "campaignId": campaign["id"],
                "amountCents": 800,
                "idempotencyKey": "day-old",
            }
        },
        donor,
    )
    assert code == "IDEMPOTENCY_KEY_REUSED"


def test_a_webhook_that_arrives_before_the_providers_answer_wins_once(
    app_factory: Callable[..., TestClient],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = app_factory(auto_capture=False)
    gql = GQL(client)
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"], amount=1500)
    original = SimulatedProvider.authorize
    sent: list[str] = []

    def webhook_first(self: SimulatedProvider, **kwargs: object) -> object:
        result = original(self, **kwargs)  # type: ignore[arg-type]
        event = f.provider_event(pledge, "authorized")
        sent.append(event["id"])
        # Applied before the answer: the provider's webhook overtakes its reply.
        assert f.post_webhook(client, event).json()["duplicate"] is False
        return result

    monkeypatch.setattr(SimulatedProvider, "authorize", webhook_first)
    paid = gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    result = paid["authorizePayment"]
    assert result["status"] == "AUTHORIZED"
    steps = [(h["fromStatus"], h["toStatus"], h["source"]) for h in result["history"]]
    # The webhook (ours, or the provider's own copy racing it) made the move;
    # the provider's answer, arriving second, added nothing.
    assert [s[:2] for s in steps] == [(None, "PENDING"), ("PENDING", "AUTHORIZED")]
    assert steps[0][2] == "api" and steps[1][2].startswith("webhook:evt_")
    with db.engine.connect() as conn:
        changes = conn.execute(
            text(
                "SELECT count(*) FROM outbox_events WHERE name = 'PledgeStatusChanged' "
                "AND payload LIKE :p"
            ),
            {"p": f'%"{pledge["id"]}"%'},
        ).scalar()
    assert changes == 1


def test_a_rejected_webhook_is_logged_with_its_reason(
    gql: GQL, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    pledge = f.pledge(gql, f.anonymous(gql), campaign["id"], amount=1000)
    with caplog.at_level(logging.WARNING, logger="careforall.webhooks"):
        response = f.post_webhook(
            client, f.provider_event(pledge, "captured", amount=999)
        )
    assert response.status_code == 422
    reasons = [
        getattr(r, "reason", "")
        for r in caplog.records
        if r.name == "careforall.webhooks"
    ]
    assert any("amount" in reason for reason in reasons), reasons


@pytest.mark.parametrize("field", ["id", "pledgeId", "reason"])
def test_a_signed_webhook_with_a_lone_surrogate_is_400(
    gql: GQL, client: TestClient, db: Database, field: str
) -> None:
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    pledge = f.pledge(gql, f.anonymous(gql), campaign["id"])
    body = f.provider_event(pledge, "failed", event_id="evt_PLACEHOLDER")
    raw = json.dumps(body)
    if field == "id":
        raw = raw.replace("evt_PLACEHOLDER", "evt_\\ud800")
    elif field == "pledgeId":
        raw = raw.replace(pledge["id"], "\\ud800")
    else:
        raw = raw.replace('"currency"', '"reason": "\\ud800", "currency"')
    response = f.post_webhook(client, raw.encode())
    assert response.status_code == 400
    with db.engine.connect() as conn:
        status = conn.execute(
            text("SELECT status FROM pledges WHERE id = :id"), {"id": pledge["id"]}
        ).scalar()
        logged = conn.execute(text("SELECT count(*) FROM webhook_events")).scalar()
    assert (status, logged) == ("PENDING", 0)


def test_roles_are_read_as_they_are_now_not_from_the_token(
    gql: GQL, db: Database
) -> None:
    admin = f.admin(gql)
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    pledge = f.pledge(gql, f.anonymous(gql), campaign["id"])
    _sql(db, "UPDATE users SET role = 'DONOR' WHERE id = :id", id=admin.id)
    assert gql.code(f.REFUND, {"id": pledge["id"]}, admin.token) == "FORBIDDEN"
    _sql(db, "UPDATE users SET role = 'ADMIN' WHERE id = :id", id=owner.id)
    # The organiser's old token now carries admin rights: refund is a valid ask
    # (the pledge is PENDING, so the machine refuses the move itself).
    assert gql.code(f.REFUND, {"id": pledge["id"]}, owner.token) == "INVALID_TRANSITION"


def test_the_web_app_is_served_at_the_root(client: TestClient) -> None:
    index = Path(__file__).resolve().parents[2] / "web" / "index.html"
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == index.read_text()

"""Retention in a running app: the server prunes on its own, and a provider event
replayed after its log rows are gone still changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import delete
from sqlmodel import col, func, select
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.models import (
    OutboxEvent,
    PledgeTransition,
    SimWebhook,
    TotalsLedger,
    WebhookEvent,
    WebhookLog,
)
from careforall.services.retention import RetentionPolicy, prune
from careforall.services.unit_of_work import UnitOfWork
from tests import factories as f
from tests.endpoints.conftest import JsonLogs
from tests.helpers.api import GQL
from tests.helpers.outbox import settled
from tests.helpers.waiting import wait_until


def pruned(table: str) -> float:
    value = REGISTRY.get_sample_value(
        "careforall_retention_pruned_rows_total", {"table": table}
    )
    assert value is not None
    return value


def count(db: Database, *where: Any, model: Any = OutboxEvent) -> int:
    with db.read() as session:
        return int(
            session.exec(select(func.count()).select_from(model).where(*where)).one()
        )


def test_the_server_prunes_old_rows_on_its_own_and_logs_each_run(
    app_factory: Callable[..., TestClient], db: Database, json_logs: JsonLogs
) -> None:
    long_ago, now = utcnow() - timedelta(days=120), utcnow()
    with db.write_session() as session:
        for at in (long_ago, long_ago, now):
            session.add(
                OutboxEvent(
                    name="PledgeCreated",
                    payload="{}",
                    status="done",
                    created_at=at,
                    available_at=at,
                    processed_at=at,
                )
            )
        for at in (long_ago, now):
            session.add(WebhookLog(outcome="ignored", status_code=200, received_at=at))
        session.commit()
    before = {t: pruned(t) for t in ("outbox_events", "webhook_log")}

    app_factory(retention_interval_seconds=0.05)

    wait_until(lambda: count(db) == 1)
    wait_until(lambda: json_logs.where(message="retention run"))
    assert count(db, model=WebhookLog) == 1
    run = json_logs.where(message="retention run")[0]
    assert run["logger"] == "careforall.retention"
    assert run["deleted"] == {
        "outbox_events": 2,
        "webhook_log": 1,
        "sim_webhooks": 0,
        "mails": 0,
    }
    assert pruned("outbox_events") - before["outbox_events"] == 2
    assert pruned("webhook_log") - before["webhook_log"] == 1


def _captured_event(db: Database, pledge_id: str) -> bytes:
    """The body of the provider's payment.captured webhook for the pledge."""
    with db.read() as session:
        bodies = session.exec(select(SimWebhook.body)).all()
    (body,) = [
        b
        for b in bodies
        if json.loads(b)["type"] == "payment.captured"
        and json.loads(b)["data"]["pledgeId"] == pledge_id
    ]
    return body.encode()


def test_a_replayed_event_whose_log_rows_were_pruned_changes_nothing(
    client: TestClient, gql: GQL, db: Database
) -> None:
    admin = f.admin(gql)
    campaign_id = f.campaign(gql, f.register(gql).token)["id"]
    donor = f.anonymous(gql)
    pledge_id = f.pledge(gql, donor, campaign_id, amount=2500)["id"]
    gql.ok(f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, donor)
    wait_until(lambda: f.totals(gql, campaign_id) == (2500, 1))
    wait_until(lambda: settled(db))
    captured = _captured_event(db, pledge_id)
    event_id = json.loads(captured)["id"]
    gql.ok(f.REFUND, {"id": pledge_id}, admin.token)
    wait_until(lambda: f.totals(gql, campaign_id) == (0, 0))
    wait_until(lambda: settled(db))

    # A year on, retention has removed the event's webhook log rows.
    prune(UnitOfWork(db), policy=RetentionPolicy(), now=utcnow() + timedelta(days=365))
    assert count(db, col(WebhookLog.event_id) == event_id, model=WebhookLog) == 0
    history = gql.ok(f.PLEDGE, {"id": pledge_id}, admin.token)["pledge"]["history"]
    transitions = count(db, model=PledgeTransition)
    events = count(db)

    # The dedupe key (webhook_events) is kept forever: still a duplicate.
    replay = f.post_webhook(client, captured)
    assert (replay.status_code, replay.json()) == (
        200,
        {"received": True, "duplicate": True},
    )

    # Even with the dedupe key gone too, the machine refuses REFUNDED -> CAPTURED
    # and the ledger keeps the pledge at zero: the replay is applied as a no-op.
    with db.write_session() as session:
        session.execute(
            delete(WebhookEvent).where(col(WebhookEvent.event_id) == event_id)
        )
        session.commit()
    replay = f.post_webhook(client, captured)
    assert (replay.status_code, replay.json()) == (
        200,
        {"received": True, "duplicate": False},
    )
    wait_until(lambda: settled(db))

    pledge = gql.ok(f.PLEDGE, {"id": pledge_id}, admin.token)["pledge"]
    assert pledge["status"] == "REFUNDED"
    assert pledge["history"] == history
    assert count(db, model=PledgeTransition) == transitions
    assert count(db) == events  # no new event: nothing moved
    assert f.totals(gql, campaign_id) == (0, 0)
    with db.read() as session:
        assert session.get(TotalsLedger, pledge_id).counted_cents == 0  # type: ignore[union-attr]

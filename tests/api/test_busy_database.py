"""A database locked past its busy timeout: clear refusals, no 5xx, no half-writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import text
from starlette.testclient import TestClient

from careforall.db import Database
from tests import factories as f
from tests.helpers.api import GQL


@contextmanager
def write_lock_held(db_url: str) -> Iterator[None]:
    """Another process's long write transaction, as far as the database can tell.

    SQLite: a write transaction holds the file's write lock. PostgreSQL: a
    transaction holds the tables in EXCLUSIVE mode (reads pass, writes and
    row locks wait past `lock_timeout`).
    """
    if db_url.startswith("postgresql"):
        with psycopg.connect(db_url.replace("postgresql+psycopg", "postgresql")) as pg:
            pg.execute("LOCK TABLE pledges, webhook_events IN EXCLUSIVE MODE")
            yield
            pg.rollback()
        return
    conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_writes_during_a_long_lock_are_refused_cleanly_then_work(
    app_factory: Callable[..., TestClient], db: Database, db_url: str
) -> None:
    client = app_factory(busy_timeout_ms=150)
    gql = GQL(client)
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])
    request = {
        "input": {
            "campaignId": campaign["id"],
            "amountCents": 900,
            "idempotencyKey": "during-the-lock",
        }
    }
    with write_lock_held(db_url):
        body = gql(f.CREATE_PLEDGE, request, donor)
        error = body["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfterSeconds"] >= 1
        assert "busy" in error["message"]
        webhook = f.post_webhook(client, f.provider_event(pledge, "authorized"))
        assert webhook.status_code == 429
        assert webhook.headers["Retry-After"] == "1"
    with db.engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT count(*) FROM pledges WHERE idempotency_key = 'during-the-lock'"
            )
        ).scalar()
        applied = conn.execute(text("SELECT count(*) FROM webhook_events")).scalar()
    assert (stored, applied) == (0, 0)
    # Once the lock is gone the same requests succeed.
    retried = gql.ok(f.CREATE_PLEDGE, request, donor)["createPledge"]
    assert retried["amountCents"] == 900
    again = f.post_webhook(client, f.provider_event(pledge, "authorized"))
    assert again.status_code == 200

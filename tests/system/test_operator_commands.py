"""Day-two commands run as separate processes beside a live server:
`careforall reconcile` reaches the server's subscribers, and `careforall prune`
deletes old finished rows while the server keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import SQLModel, col

from careforall.db import Database, make_engine
from careforall.domain.clock import utcnow
from careforall.models import CampaignTotals, OutboxEvent, WebhookLog
from careforall.settings import Settings
from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.subscriptions import captured_donation, pair, totals_feed
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.server

# On SQLite the dispatcher wakes on its own process's commits and otherwise
# looks for due events at least every 5 s (IDLE_WAIT_SECONDS in
# outbox/dispatcher.py); on PostgreSQL a NOTIFY wakes it. Plus a margin.
CROSS_PROCESS_DEADLINE = 10.0


@pytest.fixture
def beside(server: Server) -> Iterator[Database]:
    """This test's own connection to the server's database."""
    database = Database(make_engine(Settings(database_url=server.database_url)))
    yield database
    database.dispose()


def write(db: Database, *rows: SQLModel) -> None:
    with db.write_session() as session:
        session.add_all(rows)
        session.commit()


def test_reconcile_from_the_command_line_reaches_the_servers_subscribers(
    server: Server, api: ServerGQL, beside: Database
) -> None:
    campaign_id = f.campaign(api, f.register(api).token)["id"]
    captured_donation(api, campaign_id, 2500)
    wait_until(lambda: f.totals(api, campaign_id) == (2500, 1))
    wait_until(server.settled)
    with beside.write_session() as session:
        session.execute(
            update(CampaignTotals)
            .where(col(CampaignTotals.campaign_id) == campaign_id)
            .values(raised_cents=7, pledge_count=9)
        )
        session.commit()

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str]:
        async with totals_feed(server, campaign_id) as feed:
            corrupted = await feed.totals()
            # Another process: the server hears of it only through the database.
            done = await asyncio.to_thread(server.command, "reconcile")
            assert done.returncode == 0, done.stderr
            repaired = await feed.totals(timeout=CROSS_PROCESS_DEADLINE)
            return corrupted, repaired, done.stdout

    corrupted, repaired, stdout = asyncio.run(scenario())

    assert pair(corrupted) == (7, 9)
    assert pair(repaired) == (2500, 1)
    assert f"repaired {campaign_id}: raised 7 -> 2500 cents" in stdout
    (payload,) = server.query(
        "SELECT payload FROM outbox_events WHERE name = 'TotalsReconciled'"
    )
    assert campaign_id in payload[0]
    wait_until(server.settled)  # the event was delivered, not left pending
    assert server.logged_errors() == []


def test_prune_from_the_command_line_beside_a_live_server(
    server: Server, http: httpx.Client, beside: Database
) -> None:
    old, recent = utcnow() - timedelta(days=200), utcnow()

    def event(status: str, at: Any) -> OutboxEvent:
        done = at if status == "done" else None
        return OutboxEvent(
            name="PledgeCreated",
            payload="{}",
            status=status,
            attempts=8 if status == "dead" else 0,
            created_at=at,
            available_at=at,
            processed_at=done,
        )

    write(beside, *(event("done", at) for at in (old, old, old, recent)))
    write(beside, event("dead", old))
    write(
        beside,
        *(
            WebhookLog(outcome="ignored", status_code=200, received_at=at)
            for at in (old, recent)
        ),
    )

    result = server.command("prune")

    assert result.returncode == 0, result.stderr
    assert "outbox_events: 3 row(s) deleted (older than 30 days)" in result.stdout
    assert "webhook_log: 1 row(s) deleted (older than 90 days)" in result.stdout
    assert "prune: 4 row(s) deleted" in result.stdout
    assert server.query(
        "SELECT status, count(*) FROM outbox_events GROUP BY status ORDER BY status"
    ) == [("dead", 1), ("done", 1)]
    assert server.scalar("SELECT count(*) FROM webhook_log") == 1
    assert http.get("/readyz").status_code == 200
    again = server.command("prune")
    assert "prune: 0 row(s) deleted" in again.stdout


def test_prune_refuses_a_database_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    lonely = Server(tmp_path, missing)

    result = lonely.command("prune")

    assert result.returncode == 2
    assert "there is no database at" in result.stderr
    assert not missing.exists()

"""The database unavailable: locked past the busy timeout, read-only, disk full.

Each fault must give clients a contract code (never a 5xx or an internal
detail), write nothing half-way, and clear without a trace once it is gone.
"""

from __future__ import annotations

import resource
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from starlette.testclient import TestClient

from careforall.db import Database
from tests import factories as f
from tests.helpers.api import GQL, ServerGQL
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

# SQLite's own faults: its write lock, its read-only mode, its file growing.
pytestmark = pytest.mark.sqlite_only

LEAKS = ("Traceback", "sqlalchemy", 'File "', "SELECT ", "INSERT ")


def scalar(db: Database, sql: str) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def assert_clean_refusal(response: Any) -> dict[str, Any]:
    """A refusal with a contract code that asks to retry, and nothing internal."""
    assert response.status_code < 500, response.text
    assert not any(leak in response.text for leak in LEAKS), response.text
    error: dict[str, Any] = response.json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED", error
    assert error["extensions"]["retryAfterSeconds"] >= 1
    return error


def readyz(client: TestClient | httpx.Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


NOT_READY = (
    503,
    {
        "ready": False,
        "checks": {"database": False, "outbox": True, "webhook_sender": True},
    },
)
READY = (
    200,
    {
        "ready": True,
        "checks": {"database": True, "outbox": True, "webhook_sender": True},
    },
)


def create_pledge(
    client: TestClient | httpx.Client, token: str, campaign_id: str, key: str
) -> Any:
    return client.post(
        "/graphql",
        json={
            "query": f.CREATE_PLEDGE,
            "variables": {
                "input": {
                    "campaignId": campaign_id,
                    "amountCents": 700,
                    "idempotencyKey": key,
                }
            },
        },
        headers={"Authorization": f"Bearer {token}"},
    )


# --- locked past the busy timeout --------------------------------------------


class LockAfterCommit:
    """Takes SQLite's write lock from another connection right after the app's
    next commit that wrote outbox events, before its workers can act on it."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.armed = False
        self.locked = threading.Event()

    def __call__(self) -> None:
        if self.armed and not self.locked.is_set():
            self.armed = False
            self.conn.execute("BEGIN IMMEDIATE")
            self.locked.set()

    def release(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def lock_after_commit(db_url: str) -> Iterator[LockAfterCommit]:
    lock = LockAfterCommit(db_url.removeprefix("sqlite:///"))
    yield lock
    if lock.conn.in_transaction:
        lock.release()
    lock.close()


def test_a_long_lock_makes_the_app_unready_and_the_workers_ride_it_out(
    app_factory: Callable[..., TestClient],
    db: Database,
    lock_after_commit: LockAfterCommit,
) -> None:
    client = app_factory(busy_timeout_ms=150)
    gql = GQL(client)
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    donor = f.anonymous(gql)
    pledges = [f.pledge(gql, donor, campaign["id"], 1000 + i) for i in range(3)]
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    # First in line, so the lock is taken before the dispatcher is woken.
    runtime.db._commit_listeners.insert(0, lock_after_commit)
    lock_after_commit.armed = True
    authorized = gql(f.AUTHORIZE, {"id": pledges[0]["id"], "pm": "pm_card_ok"}, donor)
    if "errors" in authorized:
        # The provider's webhook applied the authorization first and the lock
        # came after its commit: the API's own write was refused, cleanly.
        assert [e["extensions"]["code"] for e in authorized["errors"]] == [
            "RATE_LIMITED"
        ], authorized
    else:
        assert authorized["data"]["authorizePayment"]["status"] == "AUTHORIZED"
    assert lock_after_commit.locked.is_set()
    try:
        # Held for many busy timeouts: every write in the app fails meanwhile,
        # so the app is not ready (SELECT 1 alone would still pass beside a
        # writer in WAL mode); the workers stay alive and keep retrying.
        wait_until(lambda: readyz(client) == NOT_READY, timeout=3)
        began = time.monotonic()
        while time.monotonic() - began < 1.2:
            assert readyz(client) == NOT_READY
            assert client.get("/healthz").status_code == 200
            time.sleep(0.1)  # it stays so while time passes: what is tested
        assert_clean_refusal(create_pledge(client, donor, campaign["id"], "locked"))
        # The capture the authorization asked for is still waiting.
        assert f.totals(gql, campaign["id"]) == (0, 0)
        status = gql.ok(f.PLEDGE, {"id": pledges[0]["id"]}, donor)["pledge"]["status"]
        assert status == "AUTHORIZED"
    finally:
        lock_after_commit.release()
    # Released: ready again, and both workers catch up by themselves.
    wait_until(lambda: readyz(client) == READY, timeout=3)
    wait_until(lambda: f.totals(gql, campaign["id"]) == (1000, 1), timeout=10)
    for p in pledges[1:]:
        gql.ok(f.AUTHORIZE, {"id": p["id"], "pm": "pm_card_ok"}, donor)
    wait_until(lambda: f.totals(gql, campaign["id"]) == (3003, 3), timeout=10)
    wait_until(
        lambda: (
            scalar(db, "SELECT count(*) FROM sim_webhooks WHERE delivered_at IS NULL")
            == 0
        ),
        timeout=10,
    )
    statuses = {
        gql.ok(f.PLEDGE, {"id": p["id"]}, donor)["pledge"]["status"] for p in pledges
    }
    assert statuses == {"CAPTURED"}
    assert scalar(db, "SELECT count(*) FROM outbox_events WHERE status='dead'") == 0
    assert (
        scalar(db, "SELECT count(*) FROM pledges WHERE idempotency_key='locked'") == 0
    )


# --- read-only ----------------------------------------------------------------


class ReadOnly:
    """`PRAGMA query_only` on every connection the app checks out while on.

    A server cannot start on a read-only file (it reconciles totals at start
    and exits), and chmod does not stop root; query_only makes SQLite refuse
    every write with SQLITE_READONLY, exactly as a read-only file would.
    """

    def __init__(self) -> None:
        self.on = False

    def __call__(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.execute(f"PRAGMA query_only={'ON' if self.on else 'OFF'}")


@pytest.fixture
def read_only_app(
    app_factory: Callable[..., TestClient],
) -> tuple[TestClient, ReadOnly]:
    client = app_factory()
    switch = ReadOnly()
    engine = client.app.state.runtime.db.engine  # type: ignore[attr-defined]
    event.listen(engine, "checkout", switch)
    return client, switch


def test_a_read_only_database_refuses_writes_cleanly_then_recovers(
    read_only_app: tuple[TestClient, ReadOnly], db: Database
) -> None:
    client, read_only = read_only_app
    gql = GQL(client)
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    donor = f.anonymous(gql)
    before = f.pledge(gql, donor, campaign["id"], 1500)
    counts = {
        table: scalar(db, f"SELECT count(*) FROM {table}")
        for table in ("pledges", "outbox_events", "webhook_events", "users")
    }
    read_only.on = True
    # Reads still work.
    assert f.totals(gql, campaign["id"]) == (0, 0)
    assert gql.ok(f.PLEDGE, {"id": before["id"]}, donor)["pledge"]["status"] == (
        "PENDING"
    )
    assert_clean_refusal(create_pledge(client, donor, campaign["id"], "ro-1"))
    assert_clean_refusal(
        client.post(
            "/graphql",
            json={"query": "mutation { startAnonymousSession { token } }"},
        )
    )
    webhook = f.post_webhook(client, f.provider_event(before, "authorized"))
    assert webhook.status_code == 429
    assert not any(leak in webhook.text for leak in LEAKS)
    # Nothing was half-written.
    assert {
        table: scalar(db, f"SELECT count(*) FROM {table}") for table in counts
    } == counts
    read_only.on = False
    again = gql.ok(f.CREATE_PLEDGE, create_input(campaign["id"], "ro-1"), donor)
    assert again["createPledge"]["status"] == "PENDING"
    gql.ok(f.AUTHORIZE, {"id": before["id"], "pm": "pm_card_ok"}, donor)
    wait_until(lambda: f.totals(gql, campaign["id"]) == (1500, 1))
    assert scalar(db, "SELECT count(*) FROM outbox_events WHERE status='dead'") == 0


def create_input(campaign_id: str, key: str) -> dict[str, Any]:
    return {
        "input": {"campaignId": campaign_id, "amountCents": 700, "idempotencyKey": key}
    }


def scene(client: TestClient) -> tuple[GQL, dict[str, Any], str]:
    """An organiser's campaign and an anonymous donor."""
    gql = GQL(client)
    owner = f.register(gql)
    return gql, f.campaign(gql, owner.token), f.anonymous(gql)


def test_readiness_reports_a_read_only_database_until_it_is_writable(
    read_only_app: tuple[TestClient, ReadOnly],
) -> None:
    client, read_only = read_only_app
    gql, campaign, donor = scene(client)
    assert readyz(client) == READY
    read_only.on = True
    # Nobody writes: the probe finds out by itself (reads still pass, so a
    # SELECT 1 alone would say ready).
    wait_until(lambda: readyz(client) == NOT_READY, timeout=3)
    assert f.totals(gql, campaign["id"]) == (0, 0)
    assert client.get("/healthz").status_code == 200
    read_only.on = False
    wait_until(lambda: readyz(client) == READY, timeout=3)
    created = gql.ok(f.CREATE_PLEDGE, create_input(campaign["id"], "after"), donor)
    assert created["createPledge"]["status"] == "PENDING"


def test_a_refused_write_makes_readiness_false_at_once(
    read_only_app: tuple[TestClient, ReadOnly],
) -> None:
    client, read_only = read_only_app
    gql, campaign, donor = scene(client)
    f.pledge(gql, donor, campaign["id"], 900)  # a write just passed
    assert readyz(client) == READY
    read_only.on = True
    assert_clean_refusal(create_pledge(client, donor, campaign["id"], "refused"))
    # No waiting: the refused write itself is the news.
    assert readyz(client) == NOT_READY
    read_only.on = False
    wait_until(lambda: readyz(client) == READY, timeout=3)


# --- disk full -----------------------------------------------------------------


def set_file_size_limit(server: Server, limit: int) -> None:
    """RLIMIT_FSIZE of the running server: a write past `limit` bytes fails with
    EFBIG (SQLite: "database or disk is full"). Python ignores SIGXFSZ."""
    resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def test_a_full_disk_loses_no_acknowledged_pledge_and_recovers(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    acknowledged: dict[str, int] = {}
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        api = ServerGQL(http)
        owner = f.register(api)
        campaign = f.campaign(api, owner.token)
        donor = f.anonymous(api)
        for i in range(3):
            p = f.pledge(api, donor, campaign["id"], 100 + i)
            acknowledged[p["id"]] = p["amountCents"]
        set_file_size_limit(server, 1)
        refused = 0
        for i in range(5):
            response = create_pledge(http, donor, campaign["id"], f"full-{i}")
            assert response.status_code < 500, response.text
            body = response.json()
            if "errors" in body:
                assert_clean_refusal(response)
                refused += 1
            else:
                pledge = body["data"]["createPledge"]
                acknowledged[pledge["id"]] = pledge["amountCents"]
        assert refused == 5
        assert http.get("/healthz").status_code == 200
        assert server.process is not None and server.process.poll() is None
    # The limit gone (a restart without it): everything works again.
    server.restart()
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        api = ServerGQL(http)
        for i in range(5):
            retried = api.ok(
                f.CREATE_PLEDGE, create_input(campaign["id"], f"full-{i}"), donor
            )["createPledge"]
            acknowledged[retried["id"]] = retried["amountCents"]
        for pledge_id in acknowledged:
            api.ok(f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, donor)
        expected = (sum(acknowledged.values()), len(acknowledged))
        wait_until(lambda: f.totals(api, campaign["id"]) == expected, timeout=10)
    stored = dict(
        server.query(
            "SELECT id, amount_cents FROM pledges WHERE campaign_id = ?",
            (campaign["id"],),
        )
    )
    assert stored == acknowledged
    assert server.scalar("SELECT count(*) FROM outbox_events WHERE status='dead'") == 0


def test_readiness_is_false_while_the_disk_is_full_and_true_once_it_has_room(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        api = ServerGQL(http)
        owner = f.register(api)
        campaign = f.campaign(api, owner.token)
        donor = f.anonymous(api)
        before = f.pledge(api, donor, campaign["id"], 1200)
        assert readyz(http) == READY
        set_file_size_limit(server, 1)
        # Nobody writes: the probe's commit meets the full disk by itself.
        wait_until(lambda: readyz(http) == NOT_READY, timeout=5)
        assert http.get("/healthz").status_code == 200
        assert_clean_refusal(create_pledge(http, donor, campaign["id"], "full"))
        assert readyz(http) == NOT_READY
        # Room again, without a restart: ready, and the refused write's retry
        # (same key) goes through once.
        set_file_size_limit(server, resource.RLIM_INFINITY)
        wait_until(lambda: readyz(http) == READY, timeout=5)
        retried = api.ok(f.CREATE_PLEDGE, create_input(campaign["id"], "full"), donor)
        again = api.ok(f.CREATE_PLEDGE, create_input(campaign["id"], "full"), donor)
        assert retried["createPledge"]["id"] == again["createPledge"]["id"]
        for pledge_id in (before["id"], retried["createPledge"]["id"]):
            api.ok(f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, donor)
        wait_until(lambda: f.totals(api, campaign["id"]) == (1900, 2), timeout=10)
        assert readyz(http) == READY
    stored = dict(
        server.query(
            "SELECT id, status FROM pledges WHERE campaign_id = ?", (campaign["id"],)
        )
    )
    assert stored == {
        before["id"]: "CAPTURED",
        retried["createPledge"]["id"]: "CAPTURED",
    }
    assert server.scalar("SELECT count(*) FROM outbox_events WHERE status='dead'") == 0

"""Readiness asks whether the database takes writes, without flapping under load.

What makes /readyz false and true again (a read-only file, a long lock, a full
disk) is in test_database_faults.py; here: how WriteHealth decides, with a
clock the test moves, and that a busy writer never reads as a fault.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.services import write_health
from careforall.services.write_health import LOCKED, WriteHealth
from careforall.settings import Settings
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sqlite_only  # SQLite's write lock and its busy timeout

BUSY_TIMEOUT = 1.0  # seconds, as WriteHealth is told in these tests


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Lock:
    """SQLite's write lock, taken from another connection (another process)."""

    def __init__(self, db_url: str) -> None:
        path = db_url.removeprefix("sqlite:///")
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def take(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


@pytest.fixture
def lock(db_url: str) -> Iterator[Lock]:
    held = Lock(db_url)
    yield held
    held.release()
    held.conn.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def health(db: Database, clock: Clock) -> WriteHealth:
    return WriteHealth(db, busy_timeout=BUSY_TIMEOUT, clock=clock)


def after_probe_interval(clock: Clock) -> None:
    clock.advance(write_health.PROBE_INTERVAL)


def test_a_lock_counts_only_once_held_longer_than_the_busy_timeout(
    health: WriteHealth, clock: Clock, lock: Lock
) -> None:
    assert health.writable() and health.probes == 1
    lock.take()
    clock.advance(write_health.FRESH_SECONDS)  # that success is no longer news
    # Seen taken, but for less than writes wait: a busy writer, not a fault.
    for _ in range(3):
        assert health.writable()
        after_probe_interval(clock)
    assert health.probes == 4
    clock.advance(BUSY_TIMEOUT)
    assert not health.writable()
    assert health.probes == 5
    lock.release()
    assert not health.writable(), "probed again before PROBE_INTERVAL"
    after_probe_interval(clock)
    # The next probe gets through: writable again, and the lock forgotten.
    assert health.writable() and health.probes == 6
    lock.take()
    after_probe_interval(clock)
    assert health.writable() and health.probes == 6  # writes flow: no probe


def test_a_refused_write_counts_at_once_and_a_commit_clears_it(
    health: WriteHealth, clock: Clock
) -> None:
    health.succeeded()
    assert health.writable() and health.probes == 0  # writes flow: no probe
    health.refused("read-only", waited=0.0)
    # A failure is news: a probe runs at once (it passes, the file is fine).
    assert health.writable() and health.probes == 1
    health.refused("disk full", waited=0.0)
    # No probe again before PROBE_INTERVAL: the failure stands.
    assert not health.writable() and health.probes == 1
    health.succeeded()
    assert health.writable() and health.probes == 1
    # A real write's lock timeout: it already waited the whole busy timeout.
    health.refused(LOCKED, waited=BUSY_TIMEOUT)
    assert not health.writable()


def test_no_probe_while_writes_flow(
    health: WriteHealth, clock: Clock, lock: Lock
) -> None:
    lock.take()
    health.succeeded()
    for _ in range(5):
        clock.advance(write_health.FRESH_SECONDS / 10)
        assert health.writable()
    assert health.probes == 0  # nothing waited beside the writer
    clock.advance(write_health.FRESH_SECONDS)
    assert health.writable()  # the probe meets the lock: not yet a fault
    assert health.probes == 1


def test_the_probe_commits_a_write_and_leaves_the_busy_timeout_as_it_was(
    health: WriteHealth, db: Database, settings: Settings, db_url: str
) -> None:
    watcher = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    try:
        (before,) = watcher.execute("PRAGMA data_version").fetchone()
        assert health.writable() and health.probes == 1
        (after,) = watcher.execute("PRAGMA data_version").fetchone()
    finally:
        watcher.close()
    # Another connection committed a change (a rolled-back write would not
    # reach the disk, so it could not meet a full one).
    assert after != before
    # The pooled connection the probe used waits as long as every write does.
    with db.engine.connect() as conn:
        timeout = conn.execute(text("PRAGMA busy_timeout")).scalar()
    assert timeout == settings.busy_timeout_ms


def test_readiness_stays_true_under_write_load(
    app_factory: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Donations and their auto-captures keep the group-commit writer, the
    dispatcher and the provider busy while /readyz is asked without pause.
    Recent commits would spare the probe; here every check is made to probe
    (the harder case): each waits beside the writer and must not fail for it."""
    monkeypatch.setattr(write_health, "FRESH_SECONDS", 0.0)
    monkeypatch.setattr(write_health, "PROBE_INTERVAL", 0.0)
    refusals: list[tuple[str, float]] = []
    real_refused = WriteHealth.refused

    def refused(self: WriteHealth, kind: str, *, waited: float) -> None:
        refusals.append((kind, waited))
        real_refused(self, kind, waited=waited)

    monkeypatch.setattr(WriteHealth, "refused", refused)
    client = app_factory()
    gql = GQL(client)
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    donors = [f.anonymous(gql) for _ in range(8)]
    stop = threading.Event()
    answers: list[int] = []
    paid: list[int] = []

    def donate(donor: str) -> None:
        while not stop.is_set():
            pledge = f.pledge(gql, donor, campaign["id"], 100)
            gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
            paid.append(1)

    def ask() -> None:
        while not stop.is_set():
            answers.append(client.get("/readyz").status_code)

    writes = client.app.state.runtime.writes  # type: ignore[attr-defined]
    probes_before = writes.probes
    with ThreadPoolExecutor(len(donors) + 1) as pool:
        futures = [pool.submit(donate, d) for d in donors] + [pool.submit(ask)]
        # The load lasts until it means something (at most 20 s): each probe
        # waits its turn behind the writes queued before it.
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and (
            len(paid) < 20 or writes.probes - probes_before < 20
        ):
            time.sleep(0.1)
        stop.set()
        for future in futures:
            future.result(timeout=10)
    probes = writes.probes - probes_before
    locked = sum(kind == LOCKED for kind, _ in refusals)
    print(
        f"\nreadiness under load: {len(answers)} checks, {probes} probes "
        f"({locked} met the writer's lock), {len(paid)} donations"
    )
    assert len(paid) >= 20 and probes >= 20, "too little to mean anything"
    assert {kind for kind, _ in refusals} <= {LOCKED}
    assert Counter(answers) == {200: len(answers)}
    wait_until(lambda: f.totals(gql, campaign["id"]) == (100 * len(paid), len(paid)))

"""SQLite's change feed (`serve --workers N`): a commit by any other
connection is heard, nothing is called while nothing commits, and a poke
makes it look at once."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from careforall.outbox.change_feed import ChangeFeed
from tests.helpers.waiting import wait_until


class Heard:
    def __init__(self) -> None:
        self.outbox = 0
        self.totals: list[dict[str, str | None] | None] = []
        self.lock = threading.Lock()

    def on_outbox(self) -> None:
        with self.lock:
            self.outbox += 1

    def on_totals(self, changes: dict[str, str | None] | None) -> None:
        with self.lock:
            self.totals.append(changes)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "feed.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (n INTEGER)")
    return path


@pytest.fixture
def heard(database: Path) -> Iterator[tuple[Heard, ChangeFeed]]:
    heard = Heard()
    feed = ChangeFeed(
        str(database), on_outbox=heard.on_outbox, on_totals=heard.on_totals
    )
    feed.start()
    assert feed.listening.wait(5)
    yield heard, feed
    feed.stop()


def commit(database: Path) -> None:
    with closing(sqlite3.connect(database, isolation_level=None)) as conn:
        conn.execute("INSERT INTO t VALUES (1)")


def test_another_connections_commit_is_heard(
    database: Path, heard: tuple[Heard, ChangeFeed]
) -> None:
    calls, _feed = heard
    commit(database)
    wait_until(lambda: calls.outbox >= 1 and calls.totals)
    # Any campaign may have changed: the process reads what its subscribers watch.
    assert calls.totals[0] is None


def test_nothing_is_called_while_nothing_commits_and_a_poke_looks_at_once(
    database: Path, heard: tuple[Heard, ChangeFeed]
) -> None:
    calls, feed = heard
    time.sleep(0.1)  # several polls
    assert (calls.outbox, calls.totals) == (0, [])
    feed.poke()
    wait_until(lambda: calls.outbox == 1 and calls.totals == [None])

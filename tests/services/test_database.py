"""The Database wrapper's own promises, on both databases."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from careforall.db import Database, InsertUnlessPresent, make_engine
from careforall.domain.clock import utcnow
from careforall.models import WebhookEvent, table_of
from careforall.services.writer import is_busy
from careforall.settings import Settings
from tests.helpers.turns import check_writes_take_turns


def test_a_connection_given_back_after_dispose_is_closed(db: Database) -> None:
    """A worker thread that outlives shutdown returns its connection to a pool
    no one uses any more; it must be closed then, not left open."""
    conn = db.engine.connect()
    conn.exec_driver_sql("SELECT 1")
    raw = conn.connection.dbapi_connection
    assert raw is not None
    db.dispose()
    conn.close()  # given back late
    with pytest.raises(Exception, match="(?i)closed"):
        raw.cursor().execute("SELECT 1")


def test_a_connection_given_back_before_dispose_stays_usable(db: Database) -> None:
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    with db.engine.connect() as again:
        assert again.exec_driver_sql("SELECT 1").scalar() == 1


def test_the_data_version_moves_with_commits_only(db: Database) -> None:
    """The response cache keeps an answer only while this number stays put."""
    start = db.data_version
    with db.read() as session:
        session.execute(text("SELECT count(*) FROM campaigns")).all()
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1")).all()
    assert db.data_version == start

    with db.write_connection() as conn:
        with conn.begin():
            conn.execute(text("UPDATE campaign_totals SET pledge_count = 0"))
        during = db.data_version
        # Moved as the commit began: a read racing it is not kept...
        assert during > start
    # ...and again once it is over: a read made during the commit, which may
    # have seen the data before it, is not kept either.
    assert db.data_version > during

    moved = db.data_version
    session = db.write_session()
    session.execute(text("UPDATE campaign_totals SET pledge_count = 0"))
    session.rollback()
    session.close()
    assert db.data_version == moved


def test_data_versions_never_repeat_across_starts(db: Database) -> None:
    """A server started again in one process (a new Database) cannot match an
    answer kept from the last start."""
    first, second = Database(db.engine), Database(db.engine)
    assert first.data_version != second.data_version
    first.data_changed_elsewhere()
    assert first.data_version not in (second.data_version, db.data_version)


def test_a_change_in_another_process_moves_the_data_version(db: Database) -> None:
    start = db.data_version
    db.data_changed_elsewhere()
    assert db.data_version > start


def test_insert_unless_present_says_whether_it_wrote(db: Database) -> None:
    """The dedupe of webhook event ids and notifications rests on this."""
    applied = InsertUnlessPresent(
        table_of(WebhookEvent),
        "event_id",
    )

    def row(pledge_id: str) -> dict[str, object]:
        return {
            "event_id": "evt_1",
            "type": "payment.captured",
            "pledge_id": pledge_id,
            "received_at": utcnow(),
        }

    with db.write_connection() as conn:
        with conn.begin():
            assert applied.run(conn, row("plg_first")) is True
            assert applied.run(conn, row("plg_second")) is False  # same transaction
    with db.write_connection() as conn:
        with conn.begin():
            assert applied.run(conn, row("plg_third")) is False  # committed before
    with db.read() as session:
        kept = session.get(WebhookEvent, "evt_1")
        assert kept is not None and kept.pledge_id == "plg_first"


def test_savepoints_undo_only_their_own_writes(db: Database) -> None:
    """SQLite sends savepoint statements straight to the driver (a fifth of
    a pledge's write cost otherwise); they must still nest and undo alike."""
    with db.write_connection() as conn:
        with conn.begin():
            conn.execute(text("CREATE TEMPORARY TABLE probe (n INTEGER)"))
            conn.execute(text("INSERT INTO probe VALUES (1)"))
            inner = conn.begin_nested()
            conn.execute(text("INSERT INTO probe VALUES (2)"))
            innermost = conn.begin_nested()
            conn.execute(text("INSERT INTO probe VALUES (3)"))
            innermost.rollback()
            inner.commit()
            undone = conn.begin_nested()
            conn.execute(text("INSERT INTO probe VALUES (4)"))
            undone.rollback()
            kept = conn.execute(text("SELECT n FROM probe ORDER BY n")).scalars()
            assert kept.all() == [1, 2]


def test_a_failing_savepoint_statement_raises_a_sqlalchemy_error(db: Database) -> None:
    """The writer tells a busy or lost database by SQLAlchemy's error types."""
    with db.write_connection() as conn:
        with conn.begin():
            with pytest.raises(DBAPIError) as failed:
                conn.dialect.do_release_savepoint(conn, "never_made")
    if not db.is_postgres:  # the statement went straight to the driver
        assert isinstance(failed.value, OperationalError)
        assert isinstance(failed.value.orig, sqlite3.Error)


@pytest.mark.sqlite_only
def test_a_read_session_sees_one_snapshot(db: Database) -> None:
    """A read's BEGIN goes straight to the driver; it must still begin: a
    commit made meanwhile stays out of the reads that follow in the session."""
    count = text("SELECT count(*) FROM users")
    with db.read() as session:
        before = session.execute(count).scalar_one()
        with db.write_connection() as conn:
            with conn.begin():
                conn.execute(
                    text(
                        "INSERT INTO users (id, email, email_skeleton, name,"
                        " password_hash, role, created_at) VALUES ('usr_snap',"
                        " 'snap@example.org', 'snap@example.org', 'S', 'x', 'DONOR',"
                        " '2026-01-01 00:00:00')"
                    )
                )
        assert session.execute(count).scalar_one() == before
    with db.read() as session:
        assert session.execute(count).scalar_one() == before + 1


@pytest.mark.sqlite_only
def test_write_transactions_of_one_process_take_turns_handed_over_at_commit(
    db: Database,
) -> None:
    check_writes_take_turns(db, db)


@pytest.mark.sqlite_only
def test_a_turn_kept_past_the_busy_timeout_is_refused_as_busy(
    settings: Settings,
) -> None:
    """A write of the process that holds the lock too long: the next one is
    refused as SQLite refuses it (locked), never left waiting for good."""
    db = Database(make_engine(replace(settings, busy_timeout_ms=100)))
    try:
        with db.write_connection() as conn, conn.begin():
            conn.exec_driver_sql("UPDATE app_secrets SET value = value")
            refused: list[BaseException] = []

            def write() -> None:
                try:
                    with db.write_connection() as other, other.begin():
                        other.exec_driver_sql("UPDATE app_secrets SET value = value")
                except OperationalError as exc:
                    refused.append(exc)

            waiting = threading.Thread(target=write)
            waiting.start()
            waiting.join(10)
            assert not waiting.is_alive()
            assert len(refused) == 1 and is_busy(refused[0])  # type: ignore[arg-type]
        with db.write_connection() as conn, conn.begin():  # the turn came back
            conn.exec_driver_sql("UPDATE app_secrets SET value = value")
    finally:
        db.dispose()

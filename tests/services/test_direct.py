"""Direct statements: on SQLite they skip SQLAlchemy's execution layer, yet read
and write the same values, fail with SQLAlchemy's own exceptions (also seen by
its error listeners), and leave nothing behind when part of a write fails."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    insert,
    select,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, IntegrityError

from careforall.db import Database
from careforall.direct import Direct
from careforall.domain.rules import Principal
from careforall.models import Campaign, WebhookEvent, table_of
from tests.services.conftest import MakeCampaign, statements_sent

CAMPAIGNS = table_of(Campaign)
EVENTS = table_of(WebhookEvent)
CAMPAIGN_BY_ID = select(
    CAMPAIGNS.c.id, CAMPAIGNS.c.goal_cents, CAMPAIGNS.c.ends_at, CAMPAIGNS.c.created_at
).where(CAMPAIGNS.c.id == bindparam("id"))
EVENT_IDS = select(EVENTS.c.event_id, EVENTS.c.received_at).where(
    EVENTS.c.pledge_id == bindparam("pledge_id")
)


def event_row(event_id: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "payment.captured",
        "pledge_id": "plg_direct",
        "received_at": at,
    }


def test_rows_read_the_same_as_through_sqlalchemy(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    ends = datetime(2031, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    campaign = make_campaign(organiser, ends_at=ends)
    with db.engine.begin() as conn:
        direct = Direct(CAMPAIGN_BY_ID).first(conn, {"id": campaign.id})
        usual = conn.execute(CAMPAIGN_BY_ID, {"id": campaign.id}).one()
        assert Direct(CAMPAIGN_BY_ID).first(conn, {"id": "cmp_none"}) is None
    assert direct is not None
    assert tuple(direct) == tuple(usual)
    assert (direct.id, direct.goal_cents, direct.ends_at) == (
        campaign.id,
        campaign.goal_cents,
        ends,
    )
    assert direct.created_at.tzinfo is not None  # the column type's own reading


def test_writes_store_what_sqlalchemy_would(db: Database) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    with db.engine.begin() as conn:
        Direct(insert(EVENTS)).run(conn, event_row("evt_direct_one", at))
        Direct(insert(EVENTS)).run_many(
            conn,
            [
                event_row("evt_direct_two", at + timedelta(seconds=1)),
                event_row("evt_direct_three", at + timedelta(seconds=2)),
            ],
        )
    with db.engine.connect() as conn:
        stored = conn.execute(EVENT_IDS, {"pledge_id": "plg_direct"}).all()
    assert sorted((r.event_id, r.received_at) for r in stored) == [
        ("evt_direct_one", at),
        ("evt_direct_three", at + timedelta(seconds=2)),
        ("evt_direct_two", at + timedelta(seconds=1)),
    ]


def test_a_failing_write_raises_sqlalchemys_error_and_leaves_no_row(
    db: Database,
) -> None:
    """The second row repeats the first one's key: neither is stored, the
    caller catches SQLAlchemy's IntegrityError, and SQLAlchemy's error
    listeners (the write health) hear of it."""
    at = datetime(2030, 1, 2, tzinfo=UTC)
    heard: list[str] = []

    def listener(context: ExceptionContext) -> None:
        heard.append(type(context.sqlalchemy_exception).__name__)

    event.listen(db.engine, "handle_error", listener)
    try:
        with db.engine.begin() as conn:
            with pytest.raises(IntegrityError):
                Direct(insert(EVENTS)).run_many(
                    conn,
                    [
                        event_row("evt_direct_twice", at),
                        event_row("evt_direct_other", at),
                        event_row("evt_direct_twice", at),
                    ],
                )
            # The transaction goes on without them (SQLite; PostgreSQL has
            # failed the transaction and rolls it back at the end).
            if db.engine.dialect.name == "sqlite":
                Direct(insert(EVENTS)).run(conn, event_row("evt_direct_after", at))
    finally:
        event.remove(db.engine, "handle_error", listener)
    assert heard == ["IntegrityError"]
    with db.engine.connect() as conn:
        stored = {
            r.event_id for r in conn.execute(EVENT_IDS, {"pledge_id": "plg_direct"})
        }
    expected = {"evt_direct_after"} if db.engine.dialect.name == "sqlite" else set()
    assert stored == expected


def test_sqlite_runs_them_on_its_driver(db: Database) -> None:
    """No SQLAlchemy execution at all on SQLite: its statement events never
    fire. PostgreSQL goes the usual way."""
    with statements_sent(db) as seen, db.engine.begin() as conn:
        now = datetime.now(UTC)
        Direct(insert(EVENTS)).run(conn, event_row("evt_direct_driver", now))
        Direct(insert(EVENTS)).run_many(conn, [event_row("evt_direct_alone", now)])
        Direct(insert(EVENTS)).run_many(
            conn,
            [
                event_row("evt_direct_pair_1", now),
                event_row("evt_direct_pair_2", now),
            ],
        )
        assert len(Direct(EVENT_IDS).rows(conn, {"pledge_id": "plg_direct"})) == 4
    if db.engine.dialect.name == "sqlite":
        assert [s for s in seen if "webhook_events" in s] == []
    else:
        assert len([s for s in seen if "webhook_events" in s]) == 4


@pytest.mark.sqlite_only
def test_a_missing_value_or_a_python_side_default_is_refused(db: Database) -> None:
    with_default = Table(
        "direct_defaults",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("label", String, default="made in Python"),
    )
    with db.engine.begin() as conn:
        with pytest.raises(KeyError):
            Direct(EVENT_IDS).rows(conn, {})
        with pytest.raises(TypeError):
            Direct(insert(with_default)).run(conn, {"id": 1})
        with pytest.raises(TypeError):  # an IN list is rendered per call
            Direct(
                select(EVENTS.c.event_id).where(
                    EVENTS.c.event_id.in_(bindparam("ids", expanding=True))
                )
            ).rows(conn, {"ids": ["evt_a"]})
        at = datetime.now(UTC)
        with pytest.raises(ValueError):
            Direct(insert(EVENTS)).run_many(
                conn,
                [event_row("evt_a", at), {**event_row("evt_b", at), "type": None}]
                + [{k: v for k, v in event_row("evt_c", at).items() if k != "type"}],
            )


@pytest.mark.sqlite_only
def test_after_sqlite_ended_the_transaction_sqlalchemy_runs_them(
    db: Database,
) -> None:
    """SQLite rolls the whole transaction back after a full disk or an I/O
    error; a statement on the driver would then commit on its own."""
    with statements_sent(db) as seen, db.engine.begin() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection) and driver.in_transaction
        driver.rollback()  # what SQLite does by itself after such an error
        Direct(EVENT_IDS).rows(conn, {"pledge_id": "plg_direct"})
    assert [s for s in seen if "webhook_events" in s] != []


@pytest.mark.sqlite_only
def test_outside_a_transaction_sqlalchemy_begins_one(db: Database) -> None:
    """A write on a connection with no transaction yet is not committed on
    its own by the driver: SQLAlchemy runs it, in the transaction it begins."""
    with db.engine.connect() as conn:
        Direct(insert(EVENTS)).run(
            conn, event_row("evt_direct_rolled_back", datetime.now(UTC))
        )
        assert conn.in_transaction()
        conn.rollback()
    with db.engine.connect() as conn:
        assert conn.execute(EVENT_IDS, {"pledge_id": "plg_direct"}).all() == []


def test_a_single_read_on_a_pooled_connection_reads_what_sqlalchemy_reads(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    """read_one: on SQLite straight on a pooled driver connection, outside any
    transaction (no SQLAlchemy execution); PostgreSQL the usual way. Either
    way the same row, typed by the columns, and None for no row."""
    ends = datetime(2031, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    campaign = make_campaign(organiser, ends_at=ends)
    with statements_sent(db) as seen:
        direct = Direct(CAMPAIGN_BY_ID).read_one(db.readers, {"id": campaign.id})
        missing = Direct(CAMPAIGN_BY_ID).read_one(db.readers, {"id": "cmp_none"})
    with db.engine.connect() as conn:
        usual = conn.execute(CAMPAIGN_BY_ID, {"id": campaign.id}).one()

    assert missing is None
    assert direct is not None
    assert tuple(direct) == tuple(usual)
    assert (direct.id, direct.ends_at) == (campaign.id, ends)
    assert direct.created_at.tzinfo is not None
    sent = [s for s in seen if "FROM campaigns" in s]
    assert len(sent) == (0 if db.engine.dialect.name == "sqlite" else 2)
    if db.engine.dialect.name == "sqlite":
        # Kept aside for the next read, with no transaction left open.
        assert len(db.readers) == 1
        kept = db.readers.take()
        assert not kept.in_transaction
        db.readers.give_back(kept)


@pytest.mark.sqlite_only
def test_a_kept_reader_sees_each_commit_and_is_closed_with_the_database(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    """A reader kept between reads holds no snapshot: a commit made in the
    meantime is read at once. Several readers at once are all kept, up to a
    few; disposing of the database closes them."""
    campaign = make_campaign(organiser)
    read = Direct(CAMPAIGN_BY_ID)
    assert read.read_one(db.readers, {"id": campaign.id}).goal_cents == 500_000
    with db.engine.begin() as conn:
        conn.execute(CAMPAIGNS.update().values(goal_cents=123))
    assert read.read_one(db.readers, {"id": campaign.id}).goal_cents == 123

    taken = [db.readers.take() for _ in range(db.readers.keep + 2)]
    assert len({id(t) for t in taken}) == len(taken)
    for driver in taken:
        db.readers.give_back(driver)
    assert len(db.readers) == db.readers.keep
    kept = db.readers.take()
    db.readers.give_back(kept)
    db.dispose()
    assert len(db.readers) == 0
    with pytest.raises(sqlite3.ProgrammingError):
        kept.execute("SELECT 1")


def test_a_single_read_that_fails_raises_sqlalchemys_own_error(db: Database) -> None:
    missing = Table("no_such_table", MetaData(), Column("id", String))
    statement = select(missing.c.id).where(missing.c.id == bindparam("id"))

    with pytest.raises(DBAPIError, match="no_such_table"):
        Direct(statement).read_one(db.readers, {"id": "x"})
    # The connection that failed is closed, not kept for the next read.
    assert len(db.readers) == 0

"""Migrations build the schema the models describe, and SQLite runs durable."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel

from careforall.db import Database, make_engine, run_migrations
from careforall.models import described_by_models
from careforall.settings import Settings
from tests.migrations.seed import (
    STAMP,
    OldDatabase,
    insert,
    insert_campaign,
    insert_pledge,
    insert_user,
)


def test_upgrade_head_on_an_empty_database_matches_the_models(
    old_database: OldDatabase,
) -> None:
    """Upgrading an empty database twice gives exactly the models' schema."""
    run_migrations(old_database.settings)
    run_migrations(old_database.settings)  # a second run is a no-op
    with old_database.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": described_by_models,
            },
        )
        assert compare_metadata(context, SQLModel.metadata) == []
        assert "pledges" in inspect(conn).get_table_names()


@pytest.mark.sqlite_only
def test_sqlite_runs_in_wal_with_full_sync_and_foreign_keys(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA temp_store")).scalar() == 2  # MEMORY
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000


def test_an_installed_package_finds_its_migrations_and_web_files() -> None:
    from careforall.db import migrations_dir, web_dir

    assert (migrations_dir() / "env.py").is_file()
    assert any((migrations_dir() / "versions").glob("0001_*.py"))
    assert (web_dir() / "index.html").is_file()


def test_secrets_are_generated_once_and_kept_with_the_data(settings: Settings) -> None:
    from careforall.services.secrets import kept_secret

    first = Database(make_engine(settings))
    try:
        made = kept_secret(first, "jwt_secret", None)
        assert len(made) >= 32
        assert kept_secret(first, "jwt_secret", None) == made
        assert kept_secret(first, "jwt_secret", "given") == "given"
    finally:
        first.dispose()
    second = Database(make_engine(settings))  # as after a restart
    try:
        assert kept_secret(second, "jwt_secret", None) == made
    finally:
        second.dispose()


def test_0005_on_existing_accounts(old_database: OldDatabase) -> None:
    """Accounts made before 0005 get their skeleton (look-alikes among them
    keep signing in, each with a skeleton of its own) and token version 0;
    the downgrade takes both away and the upgrade runs again."""
    old_database.upgrade("0004")
    rows = [
        ("usr_1", "ops@example.org", "2026-01-01 00:00:00"),
        ("usr_2", "οps@example.org", "2026-01-02 00:00:00"),  # Greek ο
        ("usr_3", "dana@example.org", "2026-01-03 00:00:00"),
    ]
    with old_database.engine.begin() as conn:
        for user_id, email, created in rows:
            insert_user(conn, "0004", user_id, email, name="N", created_at=created)
        insert(conn, "anonymous_sessions", id="anon_1", created_at=STAMP)
    old_database.upgrade()
    found = old_database.rows(
        "SELECT id, email_skeleton, token_version FROM users ORDER BY id"
    )
    [(anon,)] = old_database.rows("SELECT token_version FROM anonymous_sessions")
    assert found == [
        ("usr_1", "ops@example.org", 0),
        ("usr_2", "ops@example.org#usr_2", 0),
        ("usr_3", "dana@example.org", 0),
    ]
    assert anon == 0
    old_database.downgrade("0004")
    columns = old_database.columns("users")
    assert "email_skeleton" not in columns and "token_version" not in columns
    old_database.upgrade()


def test_0010_on_existing_campaigns(old_database: OldDatabase) -> None:
    """Campaigns made before 0010 keep their status (ACTIVE stays ACTIVE: review
    holds back new campaigns only) and have paid out nothing; the downgrade
    takes the new tables and columns away and the upgrade runs again."""
    old_database.upgrade("0006")
    with old_database.engine.begin() as conn:
        insert_user(conn, "0006")
        insert_campaign(conn, "0006", "cmp_1", status="ACTIVE")
        insert_campaign(conn, "0006", "cmp_2", status="PAUSED")
    old_database.upgrade()
    found = old_database.rows(
        "SELECT id, status, paid_out_cents, review_note FROM campaigns ORDER BY id"
    )
    assert found == [
        ("cmp_1", "ACTIVE", 0, None),
        ("cmp_2", "PAUSED", 0, None),
    ]
    old_database.downgrade("0006")
    columns = old_database.columns("campaigns")
    assert "paid_out_cents" not in columns and "review_note" not in columns
    assert not old_database.tables() & {
        "payouts",
        "campaign_updates",
        "campaign_edits",
    }
    old_database.upgrade()


def test_0012_on_existing_campaigns(old_database: OldDatabase) -> None:
    """0012 adds the image column in place: campaigns referenced by other rows
    keep their rows, have no image, and the downgrade takes the column away."""
    old_database.upgrade("0010")
    with old_database.engine.begin() as conn:
        insert_user(conn, "0010")
        insert_campaign(conn, "0010")
        insert(
            conn,
            "campaign_edits",
            campaign_id="cmp_1",
            actor_user_id="usr_1",
            at="2026-01-02 00:00:00",
            field="title",
        )
    old_database.upgrade()
    found = old_database.rows("SELECT id, status, image_key FROM campaigns")
    [edits] = old_database.rows("SELECT count(*) FROM campaign_edits")
    assert found == [("cmp_1", "ACTIVE", None)]
    assert edits[0] == 1
    old_database.downgrade("0010")
    assert "image_key" not in old_database.columns("campaigns")
    old_database.upgrade()


def test_0014_on_existing_pledges(old_database: OldDatabase) -> None:
    """Pledges made before 0014 (with history rows pointing at them) stay, and
    asked for no campaign updates; down and up again leave them in place."""
    old_database.upgrade("0013")
    with old_database.engine.begin() as conn:
        insert_user(conn, "0013")
        insert_campaign(conn, "0013")
        insert_pledge(conn, "0013")
        insert(
            conn,
            "pledge_transitions",
            pledge_id="plg_1",
            to_status="PENDING",
            at=STAMP,
            source="api",
        )
    old_database.upgrade()
    found = old_database.rows(
        "SELECT id, status, campaign_updates, receipt_number, receipt_issued_at "
        "FROM pledges"
    )
    assert found == [("plg_1", "CAPTURED", False, None, None)]
    old_database.downgrade("0013")
    assert old_database.rows("SELECT count(*) FROM pledge_transitions") == [(1,)]
    assert not old_database.columns("pledges") & {"campaign_updates", "receipt_number"}
    assert not old_database.tables() & {"campaign_opt_outs", "update_mailings"}
    old_database.upgrade()


def test_0015_on_existing_campaigns(old_database: OldDatabase) -> None:
    """Campaigns made before 0015 are found by search at once; the downgrade
    takes the index away and the upgrade builds it again."""
    from careforall.services.discovery import list_public_campaigns

    def found(word: str) -> list[str]:
        with Session(old_database.engine) as session:
            page = list_public_campaigns(session, first=10, after=None, search=word)
            return [c.id for c in page.items]

    old_database.upgrade("0014")
    with old_database.engine.begin() as conn:
        insert_user(conn, "0014")
        insert_campaign(conn, "0014", title="Hip", description="A new hip for Ida")
    old_database.upgrade()
    assert found("ida") == ["cmp_1"]
    with old_database.engine.begin() as conn:
        conn.execute(text("UPDATE campaigns SET description = 'For Una'"))
    assert found("ida") == [] and found("una") == ["cmp_1"]
    old_database.downgrade("0014")
    with old_database.engine.connect() as conn:
        indexes = {i["name"] for i in inspect(conn).get_indexes("campaigns")}
    assert "campaign_search" not in old_database.tables()
    assert not indexes & {"ix_campaigns_search", "ix_campaigns_category"}
    old_database.upgrade()
    assert found("una") == ["cmp_1"]

"""Migrations build the schema the models describe, and SQLite runs durable."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from careforall.db import Database, make_engine, run_migrations
from careforall.models import described_by_models
from careforall.settings import Settings
from tests import postgres
from tests.helpers.databases import databases_under_test


def check_migrations_build_the_models(settings: Settings) -> None:
    """Upgrading an empty database twice gives exactly the models' schema."""
    run_migrations(settings)
    run_migrations(settings)  # a second run is a no-op
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": described_by_models,
                },
            )
            assert compare_metadata(context, SQLModel.metadata) == []
            assert "pledges" in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_upgrade_head_on_an_empty_file_matches_the_models(tmp_path: Path) -> None:
    check_migrations_build_the_models(
        Settings(database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    )


def test_upgrade_head_on_an_empty_postgres_database_matches_the_models(
    postgres_server: str,
) -> None:
    if "postgresql" not in databases_under_test():
        pytest.skip("PostgreSQL is not among CAREFORALL_TEST_DATABASES")
    url = postgres.create_database(postgres_server, template=None)
    try:
        check_migrations_build_the_models(Settings(database_url=url))
    finally:
        postgres.drop_database(postgres_server, url)


@pytest.mark.sqlite_only
def test_sqlite_runs_in_wal_with_full_sync_and_foreign_keys(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
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


def _migrate(settings: Settings, action: str, revision: str) -> None:
    from alembic import command

    from careforall.db import alembic_config

    engine = make_engine(settings)
    try:
        with engine.begin() as connection:
            config = alembic_config(settings.database_url)
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
    finally:
        engine.dispose()


def check_0005_on_existing_accounts(settings: Settings) -> None:
    """Accounts made before 0005 get their skeleton (look-alikes among them
    keep signing in, each with a skeleton of its own) and token version 0;
    the downgrade takes both away and the upgrade runs again."""
    _migrate(settings, "upgrade", "0004")
    engine = make_engine(settings)
    rows = [
        ("usr_1", "ops@example.org", "2026-01-01 00:00:00"),
        ("usr_2", "οps@example.org", "2026-01-02 00:00:00"),  # Greek ο
        ("usr_3", "dana@example.org", "2026-01-03 00:00:00"),
    ]
    try:
        with engine.begin() as conn:
            for user_id, email, created in rows:
                conn.execute(
                    text(
                        "INSERT INTO users (id, email, name, password_hash, role, "
                        "created_at) VALUES (:i, :e, 'N', 'x', 'DONOR', :c)"
                    ),
                    {"i": user_id, "e": email, "c": created},
                )
            conn.execute(
                text(
                    "INSERT INTO anonymous_sessions (id, created_at) "
                    "VALUES ('anon_1', '2026-01-01 00:00:00')"
                )
            )
        _migrate(settings, "upgrade", "head")
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT id, email_skeleton, token_version FROM users ORDER BY id")
            ).all()
            anon = conn.execute(
                text("SELECT token_version FROM anonymous_sessions")
            ).scalar_one()
        assert [tuple(row) for row in found] == [
            ("usr_1", "ops@example.org", 0),
            ("usr_2", "ops@example.org#usr_2", 0),
            ("usr_3", "dana@example.org", 0),
        ]
        assert anon == 0
        _migrate(settings, "downgrade", "0004")
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("users")}
        assert "email_skeleton" not in columns and "token_version" not in columns
        _migrate(settings, "upgrade", "head")
    finally:
        engine.dispose()


def test_0005_on_existing_accounts_in_sqlite(tmp_path: Path) -> None:
    check_0005_on_existing_accounts(
        Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}")
    )


def test_0005_on_existing_accounts_in_postgres(postgres_server: str) -> None:
    if "postgresql" not in databases_under_test():
        pytest.skip("PostgreSQL is not among CAREFORALL_TEST_DATABASES")
    url = postgres.create_database(postgres_server, template=None)
    try:
        check_0005_on_existing_accounts(Settings(database_url=url))
    finally:
        postgres.drop_database(postgres_server, url)


def check_0010_on_existing_campaigns(settings: Settings) -> None:
    """Campaigns made before 0010 keep their status (ACTIVE stays ACTIVE: review
    holds back new campaigns only) and have paid out nothing; the downgrade
    takes the new tables and columns away and the upgrade runs again."""
    _migrate(settings, "upgrade", "0006")
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, email_skeleton, name, "
                    "password_hash, role, created_at, token_version) VALUES "
                    "('usr_1', 'o@example.org', 'o@example.org', 'O', 'x', "
                    "'DONOR', '2026-01-01 00:00:00', 0)"
                )
            )
            for campaign_id, status in (("cmp_1", "ACTIVE"), ("cmp_2", "PAUSED")):
                conn.execute(
                    text(
                        "INSERT INTO campaigns (id, title, description, category, "
                        "goal_cents, currency, status, owner_id, created_at, "
                        "updated_at) VALUES (:i, 'T', 'D', 'c', 100, 'USD', :s, "
                        "'usr_1', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                    ),
                    {"i": campaign_id, "s": status},
                )
        _migrate(settings, "upgrade", "head")
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT id, status, paid_out_cents, review_note FROM campaigns "
                    "ORDER BY id"
                )
            ).all()
        assert [tuple(row) for row in found] == [
            ("cmp_1", "ACTIVE", 0, None),
            ("cmp_2", "PAUSED", 0, None),
        ]
        _migrate(settings, "downgrade", "0006")
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("campaigns")}
            tables = set(inspect(conn).get_table_names())
        assert "paid_out_cents" not in columns and "review_note" not in columns
        assert not tables & {"payouts", "campaign_updates", "campaign_edits"}
        _migrate(settings, "upgrade", "head")
    finally:
        engine.dispose()


def test_0010_on_existing_campaigns_in_sqlite(tmp_path: Path) -> None:
    check_0010_on_existing_campaigns(
        Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}")
    )


def test_0010_on_existing_campaigns_in_postgres(postgres_server: str) -> None:
    if "postgresql" not in databases_under_test():
        pytest.skip("PostgreSQL is not among CAREFORALL_TEST_DATABASES")
    url = postgres.create_database(postgres_server, template=None)
    try:
        check_0010_on_existing_campaigns(Settings(database_url=url))
    finally:
        postgres.drop_database(postgres_server, url)


def check_0012_on_existing_campaigns(settings: Settings) -> None:
    """0012 adds the image column in place: campaigns referenced by other rows
    keep their rows, have no image, and the downgrade takes the column away."""
    _migrate(settings, "upgrade", "0010")
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, email_skeleton, name, "
                    "password_hash, role, created_at, token_version, "
                    "email_verified) VALUES ('usr_1', 'o@example.org', "
                    "'o@example.org', 'O', 'x', 'DONOR', '2026-01-01 00:00:00', "
                    "0, false)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO campaigns (id, title, description, category, "
                    "goal_cents, currency, status, owner_id, created_at, "
                    "updated_at, paid_out_cents) VALUES ('cmp_1', 'T', 'D', 'c', "
                    "100, 'USD', 'ACTIVE', 'usr_1', '2026-01-01 00:00:00', "
                    "'2026-01-01 00:00:00', 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO campaign_edits (campaign_id, actor_user_id, at, "
                    "field) VALUES ('cmp_1', 'usr_1', '2026-01-02 00:00:00', 'title')"
                )
            )
        _migrate(settings, "upgrade", "head")
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT id, status, image_key FROM campaigns")
            ).all()
            edits = conn.execute(text("SELECT count(*) FROM campaign_edits")).one()
        assert [tuple(row) for row in found] == [("cmp_1", "ACTIVE", None)]
        assert edits[0] == 1
        _migrate(settings, "downgrade", "0010")
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("campaigns")}
        assert "image_key" not in columns
        _migrate(settings, "upgrade", "head")
    finally:
        engine.dispose()


def test_0012_on_existing_campaigns_in_sqlite(tmp_path: Path) -> None:
    check_0012_on_existing_campaigns(
        Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}")
    )


def test_0012_on_existing_campaigns_in_postgres(postgres_server: str) -> None:
    if "postgresql" not in databases_under_test():
        pytest.skip("PostgreSQL is not among CAREFORALL_TEST_DATABASES")
    url = postgres.create_database(postgres_server, template=None)
    try:
        check_0012_on_existing_campaigns(Settings(database_url=url))
    finally:
        postgres.drop_database(postgres_server, url)


def check_0014_on_existing_pledges(settings: Settings) -> None:
    """Pledges made before 0014 (with history rows pointing at them) stay, and
    asked for no campaign updates; down and up again leave them in place."""
    _migrate(settings, "upgrade", "0013")
    engine = make_engine(settings)
    stamp = "'2026-01-01 00:00:00'"
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, email_skeleton, name, "
                    "password_hash, role, created_at, token_version) VALUES "
                    f"('usr_1', 'o@example.org', 'o@example.org', 'O', 'x', "
                    f"'DONOR', {stamp}, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO campaigns (id, title, description, category, "
                    "goal_cents, currency, status, owner_id, created_at, "
                    f"updated_at) VALUES ('cmp_1', 'T', 'D', 'c', 100, 'USD', "
                    f"'ACTIVE', 'usr_1', {stamp}, {stamp})"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO pledges (id, campaign_id, amount_cents, currency, "
                    "status, idempotency_scope, idempotency_key, donor_user_id, "
                    f"created_at, updated_at) VALUES ('plg_1', 'cmp_1', 500, "
                    f"'USD', 'CAPTURED', 'user:usr_1', 'k', 'usr_1', {stamp}, "
                    f"{stamp})"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO pledge_transitions (pledge_id, to_status, at, "
                    f"source) VALUES ('plg_1', 'PENDING', {stamp}, 'api')"
                )
            )
        _migrate(settings, "upgrade", "head")
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT id, status, campaign_updates, receipt_number, "
                    "receipt_issued_at FROM pledges"
                )
            ).all()
        assert [tuple(row) for row in found] == [
            ("plg_1", "CAPTURED", False, None, None)
        ]
        _migrate(settings, "downgrade", "0013")
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("pledges")}
            tables = set(inspect(conn).get_table_names())
            kept = conn.execute(text("SELECT count(*) FROM pledge_transitions"))
            assert kept.scalar_one() == 1
        assert not columns & {"campaign_updates", "receipt_number"}
        assert not tables & {"campaign_opt_outs", "update_mailings"}
        _migrate(settings, "upgrade", "head")
    finally:
        engine.dispose()


def test_0014_on_existing_pledges_in_sqlite(tmp_path: Path) -> None:
    check_0014_on_existing_pledges(
        Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}")
    )


def test_0014_on_existing_pledges_in_postgres(postgres_server: str) -> None:
    if "postgresql" not in databases_under_test():
        pytest.skip("PostgreSQL is not among CAREFORALL_TEST_DATABASES")
    url = postgres.create_database(postgres_server, template=None)
    try:
        check_0014_on_existing_pledges(Settings(database_url=url))
    finally:
        postgres.drop_database(postgres_server, url)


def check_0015_on_existing_campaigns(settings: Settings) -> None:
    """Campaigns made before 0015 are found by search at once; the downgrade
    takes the index away and the upgrade builds it again."""
    from sqlmodel import Session

    from careforall.services.discovery import list_public_campaigns

    _migrate(settings, "upgrade", "0014")
    engine = make_engine(settings)

    def found(word: str) -> list[str]:
        with Session(engine) as session:
            page = list_public_campaigns(session, first=10, after=None, search=word)
            return [c.id for c in page.items]

    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, email_skeleton, name, "
                    "password_hash, role, created_at, token_version) VALUES "
                    "('usr_1', 'o@example.org', 'o@example.org', 'O', 'x', "
                    "'DONOR', '2026-01-01 00:00:00', 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO campaigns (id, title, description, category, "
                    "goal_cents, currency, status, owner_id, created_at, "
                    "updated_at, paid_out_cents) VALUES ('cmp_1', 'Hip', "
                    "'A new hip for Ida', 'c', 100, 'USD', 'ACTIVE', 'usr_1', "
                    "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 0)"
                )
            )
        _migrate(settings, "upgrade", "head")
        assert found("ida") == ["cmp_1"]
        with engine.begin() as conn:
            conn.execute(text("UPDATE campaigns SET description = 'For Una'"))
        assert found("ida") == [] and found("una") == ["cmp_1"]
        _migrate(settings, "downgrade", "0014")
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            indexes = {i["name"] for i in inspect(conn).get_indexes("campaigns")}
        assert "campaign_search" not in tables
        assert not indexes & {"ix_campaigns_search", "ix_campaigns_category"}
        _migrate(settings, "upgrade", "head")
        assert found("una") == ["cmp_1"]
    finally:
        engine.dispose()


def test_0015_on_existing_campaigns_in_sqlite(tmp_path: Path) -> None:
    check_0015_on_existing_campaigns(
        Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}")
    )


def test_0015_on_existing_campaigns_in_postgres(postgres_server: str) -> None:
    if "postgresql" not in databases_under_test():
        pytest.skip("PostgreSQL is not among CAREFORALL_TEST_DATABASES")
    url = postgres.create_database(postgres_server, template=None)
    try:
        check_0015_on_existing_campaigns(Settings(database_url=url))
    finally:
        postgres.drop_database(postgres_server, url)

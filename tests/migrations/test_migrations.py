"""Migrations build the schema the models describe, and SQLite runs durable."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from careforall.db import Database, make_engine, run_migrations
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
            context = MigrationContext.configure(conn, opts={"compare_type": True})
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

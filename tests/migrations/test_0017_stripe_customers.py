"""0017 adds `stripe_customers` beside the tables of a database in use: the
plans and users there stay as they were, down and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from careforall.db import make_engine
from careforall.settings import Settings
from tests import postgres
from tests.helpers.databases import databases_under_test
from tests.migrations.test_migrations import _migrate

STAMP = "'2026-01-01 00:00:00'"


def check_0017_on_existing_plans(settings: Settings) -> None:
    _migrate(settings, "upgrade", "0016")
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, email_skeleton, name, "
                    "password_hash, role, created_at, token_version) VALUES "
                    "('usr_1', 'o@example.org', 'o@example.org', 'O', 'x', "
                    f"'DONOR', {STAMP}, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO campaigns (id, title, description, category, "
                    "goal_cents, currency, status, owner_id, created_at, "
                    "updated_at, paid_out_cents) VALUES ('cmp_1', 'T', 'D', 'c', "
                    f"100, 'USD', 'ACTIVE', 'usr_1', {STAMP}, {STAMP}, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO recurring_donations (id, donor_user_id, "
                    "campaign_id, amount_cents, currency, interval, status, "
                    "payment_method, idempotency_key, started_at, period, attempt, "
                    "created_at, updated_at) VALUES ('rec_1', 'usr_1', 'cmp_1', "
                    "2500, 'USD', 'MONTHLY', 'ACTIVE', 'pm_card_ok', 'k', "
                    f"{STAMP}, 1, 0, {STAMP}, {STAMP})"
                )
            )
        _migrate(settings, "upgrade", "head")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO stripe_customers (user_id, customer_id, "
                    f"created_at) VALUES ('usr_1', 'cus_1', {STAMP})"
                )
            )
            plans = conn.execute(
                text("SELECT id, payment_method, period FROM recurring_donations")
            ).all()
        assert [tuple(row) for row in plans] == [("rec_1", "pm_card_ok", 1)]
        _migrate(settings, "downgrade", "0016")
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            kept = conn.execute(text("SELECT count(*) FROM recurring_donations"))
            assert kept.scalar_one() == 1
        assert "stripe_customers" not in tables
        _migrate(settings, "upgrade", "head")
    finally:
        engine.dispose()


def test_0017_on_existing_plans_in_sqlite(tmp_path: Path) -> None:
    check_0017_on_existing_plans(
        Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}")
    )


def test_0017_on_existing_plans_in_postgres(postgres_server: str) -> None:
    if "postgresql" not in databases_under_test():
        pytest.skip("PostgreSQL is not among CAREFORALL_TEST_DATABASES")
    url = postgres.create_database(postgres_server, template=None)
    try:
        check_0017_on_existing_plans(Settings(database_url=url))
    finally:
        postgres.drop_database(postgres_server, url)

"""Rows as an older release stored them, for the tests that upgrade a
database in use: each helper writes the columns its table had at `revision`
(columns a later migration added are left out, as that release left them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alembic import command
from sqlalchemy import Connection, Engine, inspect, text

from careforall.db import alembic_config, make_engine
from careforall.settings import Settings

STAMP = "2026-01-01 00:00:00"


@dataclass
class OldDatabase:
    """A database the tests move along the migration chain by hand."""

    settings: Settings
    engine: Engine

    def upgrade(self, revision: str = "head") -> None:
        self._migrate("upgrade", revision)

    def downgrade(self, revision: str) -> None:
        self._migrate("downgrade", revision)

    def _migrate(self, action: str, revision: str) -> None:
        # An engine of its own, as `careforall migrate` has: the test's engine
        # holds no connection across a migration.
        engine = make_engine(self.settings)
        try:
            with engine.begin() as connection:
                config = alembic_config(self.settings.database_url)
                config.attributes["connection"] = connection
                getattr(command, action)(config, revision)
        finally:
            engine.dispose()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]

    def columns(self, table: str) -> set[str]:
        with self.engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns(table)}

    def tables(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(inspect(conn).get_table_names())


def since(revision: str, added_in: str) -> bool:
    """Whether a table at `revision` has what migration `added_in` added."""
    return revision == "head" or revision >= added_in


def insert(conn: Connection, table: str, **values: Any) -> None:
    names = ", ".join(values)
    slots = ", ".join(f":{name}" for name in values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({slots})"), values)


def insert_user(
    conn: Connection,
    revision: str,
    user_id: str = "usr_1",
    email: str = "o@example.org",
    *,
    name: str = "O",
    created_at: str = STAMP,
) -> None:
    values: dict[str, Any] = {
        "id": user_id,
        "email": email,
        "name": name,
        "password_hash": "x",
        "role": "DONOR",
        "created_at": created_at,
    }
    if since(revision, "0005"):
        values |= {"email_skeleton": email, "token_version": 0}
    if since(revision, "0007"):
        values["email_verified"] = False
    insert(conn, "users", **values)


def insert_campaign(
    conn: Connection,
    revision: str,
    campaign_id: str = "cmp_1",
    *,
    status: str = "ACTIVE",
    title: str = "T",
    description: str = "D",
    owner_id: str = "usr_1",
) -> None:
    values: dict[str, Any] = {
        "id": campaign_id,
        "title": title,
        "description": description,
        "category": "c",
        "goal_cents": 100,
        "currency": "USD",
        "status": status,
        "owner_id": owner_id,
        "created_at": STAMP,
        "updated_at": STAMP,
    }
    if since(revision, "0010"):
        values["paid_out_cents"] = 0
    insert(conn, "campaigns", **values)


def insert_pledge(
    conn: Connection,
    revision: str,
    pledge_id: str = "plg_1",
    *,
    campaign_id: str = "cmp_1",
    donor_user_id: str = "usr_1",
    status: str = "CAPTURED",
    amount_cents: int = 500,
) -> None:
    values: dict[str, Any] = {
        "id": pledge_id,
        "campaign_id": campaign_id,
        "amount_cents": amount_cents,
        "currency": "USD",
        "status": status,
        "idempotency_scope": f"user:{donor_user_id}",
        "idempotency_key": pledge_id,
        "donor_user_id": donor_user_id,
        "created_at": STAMP,
        "updated_at": STAMP,
    }
    if since(revision, "0013"):
        values |= {"refunded_cents": 0, "dispute_lost_cents": 0}
    if since(revision, "0014"):
        values["campaign_updates"] = False
    insert(conn, "pledges", **values)

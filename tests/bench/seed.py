"""Seed a migrated database (SQLite or PostgreSQL) directly with SQL, before
its server starts.

Rows are written the way the services write them (same id shapes, UTC
timestamps), and consistently: every CAPTURED pledge has its `totals_ledger`
entry and `campaign_totals` holds their sums, so the reconcile that runs at
server start finds nothing to repair.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.bench import databases
from tests.bench.databases import Database, Postgres, Writer

# Seeded ids sort before any id the server makes (they are "older").
_SEED_MS = int(time.time() * 1000) - 86_400_000
OWNER_ID = f"usr_{_SEED_MS:012x}{0:010x}"
SESSION_ID = f"anon_{_SEED_MS:012x}{0:010x}"
SCOPE = f"anon:{SESSION_ID}"


def seed_id(prefix: str, n: int) -> str:
    return f"{prefix}_{_SEED_MS:012x}{n:010x}"


def amount_of(n: int) -> int:
    """Pledge amounts: 5.00 to 54.00, varied but deterministic."""
    return 500 + (n % 50) * 100


def _now(db: Database) -> datetime | str:
    """Now, in UTC, as the database keeps it: SQLite holds the text SQLAlchemy
    writes, PostgreSQL a `timestamp`."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now if isinstance(db, Postgres) else now.isoformat(" ", "microseconds")


@dataclass
class Seeded:
    campaign_ids: list[str]
    captured: int
    # (pledge id, amount) of PENDING pledges, for webhook runs
    pending: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0


_PLEDGE_COLUMNS = (
    "id",
    "campaign_id",
    "amount_cents",
    "currency",
    "status",
    "idempotency_scope",
    "idempotency_key",
    "donor_session_id",
    "created_at",
    "updated_at",
)


def seed(
    db: Database,
    *,
    campaigns: int,
    captured: int,
    pending: int = 0,
) -> Seeded:
    """Campaigns with `captured` CAPTURED pledges spread over them, plus
    `pending` PENDING pledges on the first campaign, in a migrated SQLite file
    or PostgreSQL database (the same SQL on both)."""
    began = time.monotonic()
    now = _now(db)
    campaign_ids = [seed_id("cmp", i) for i in range(campaigns)]
    pending_rows = [
        (seed_id("plg", captured + i), amount_of(i)) for i in range(pending)
    ]
    with Writer(db) as out:
        out.execute(
            "INSERT INTO users (id, email, email_skeleton, name, password_hash, "
            "role, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                OWNER_ID,
                "organiser@bench.invalid",
                "organiser@bench.invalid",
                "Bench Organiser",
                "!",
                "DONOR",
                now,
            ),
        )
        out.execute(
            "INSERT INTO anonymous_sessions (id, created_at) VALUES (?, ?)",
            (SESSION_ID, now),
        )
        out.insert(
            "campaigns",
            (
                "id",
                "title",
                "description",
                "category",
                "goal_cents",
                "currency",
                "status",
                "ends_at",
                "owner_id",
                "created_at",
                "updated_at",
            ),
            (
                (
                    cid,
                    f"Treatment fund {i + 1}",
                    "Help with the cost of a treatment.",
                    "medical",
                    50_000_000,
                    "USD",
                    "ACTIVE",
                    None,
                    OWNER_ID,
                    now,
                    now,
                )
                for i, cid in enumerate(campaign_ids)
            ),
        )
        out.insert(
            "pledges", _PLEDGE_COLUMNS, _captured_rows(campaign_ids, captured, now)
        )
        out.execute(
            "INSERT INTO totals_ledger (pledge_id, campaign_id, counted_cents) "
            "SELECT id, campaign_id, amount_cents FROM pledges "
            "WHERE status = 'CAPTURED'"
        )
        out.execute(
            "INSERT INTO campaign_totals (campaign_id, raised_cents, pledge_count, "
            "updated_at) SELECT c.id, COALESCE(SUM(l.counted_cents), 0), "
            "COUNT(l.pledge_id), ? FROM campaigns c LEFT JOIN totals_ledger l "
            "ON l.campaign_id = c.id GROUP BY c.id",
            (now,),
        )
        out.insert(
            "pledges",
            _PLEDGE_COLUMNS,
            (
                (
                    pid,
                    campaign_ids[0],
                    amount,
                    "USD",
                    "PENDING",
                    SCOPE,
                    f"seed-p{i}",
                    SESSION_ID,
                    now,
                    now,
                )
                for i, (pid, amount) in enumerate(pending_rows)
            ),
        )
    return Seeded(
        campaign_ids=campaign_ids,
        captured=captured,
        pending=pending_rows,
        seconds=time.monotonic() - began,
    )


def _captured_rows(
    campaign_ids: list[str], count: int, now: object
) -> Iterator[tuple[object, ...]]:
    for n in range(count):
        yield (
            seed_id("plg", n),
            campaign_ids[n % len(campaign_ids)],
            amount_of(n),
            "USD",
            "CAPTURED",
            SCOPE,
            f"seed-{n}",
            SESSION_ID,
            now,
            now,
        )


def query(db: Database, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
    """Read the database beside its running server (`?` placeholders)."""
    return databases.query(db, sql, params)


def scalar(db: Database, sql: str, params: tuple[object, ...] = ()) -> Any:
    return query(db, sql, params)[0][0]

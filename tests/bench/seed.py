"""Seed a migrated database directly with SQL, before its server starts.

Rows are written the way the services write them (same id shapes, UTC
timestamps), and consistently: every CAPTURED pledge has its `totals_ledger`
entry and `campaign_totals` holds their sums, so the reconcile that runs at
server start finds nothing to repair.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


@dataclass
class Seeded:
    campaign_ids: list[str]
    captured: int
    # (pledge id, amount) of PENDING pledges, for webhook runs
    pending: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0


def seed(
    db_path: Path,
    *,
    campaigns: int,
    captured: int,
    pending: int = 0,
) -> Seeded:
    """Campaigns with `captured` CAPTURED pledges spread over them, plus
    `pending` PENDING pledges on the first campaign."""
    began = time.monotonic()
    now = _now()
    campaign_ids = [seed_id("cmp", i) for i in range(campaigns)]
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while building indexes
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("BEGIN")
        conn.execute(
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
        conn.execute(
            "INSERT INTO anonymous_sessions (id, created_at) VALUES (?, ?)",
            (SESSION_ID, now),
        )
        conn.executemany(
            "INSERT INTO campaigns (id, title, description, category, goal_cents, "
            "currency, status, ends_at, owner_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, 'USD', 'ACTIVE', NULL, ?, ?, ?)",
            (
                (
                    cid,
                    f"Treatment fund {i + 1}",
                    "Help with the cost of a treatment.",
                    "medical",
                    50_000_000,
                    OWNER_ID,
                    now,
                    now,
                )
                for i, cid in enumerate(campaign_ids)
            ),
        )
        conn.executemany(
            "INSERT INTO pledges (id, campaign_id, amount_cents, currency, status, "
            "idempotency_scope, idempotency_key, donor_session_id, created_at, "
            "updated_at) VALUES (?, ?, ?, 'USD', 'CAPTURED', ?, ?, ?, ?, ?)",
            _captured_rows(campaign_ids, captured, now),
        )
        conn.execute(
            "INSERT INTO totals_ledger (pledge_id, campaign_id, counted_cents) "
            "SELECT id, campaign_id, amount_cents FROM pledges "
            "WHERE status = 'CAPTURED'"
        )
        conn.execute(
            "INSERT INTO campaign_totals (campaign_id, raised_cents, pledge_count, "
            "updated_at) SELECT c.id, COALESCE(SUM(l.counted_cents), 0), "
            "COUNT(l.pledge_id), ? FROM campaigns c LEFT JOIN totals_ledger l "
            "ON l.campaign_id = c.id GROUP BY c.id",
            (now,),
        )
        pending_rows = [
            (seed_id("plg", captured + i), amount_of(i)) for i in range(pending)
        ]
        conn.executemany(
            "INSERT INTO pledges (id, campaign_id, amount_cents, currency, status, "
            "idempotency_scope, idempotency_key, donor_session_id, created_at, "
            "updated_at) VALUES (?, ?, ?, 'USD', 'PENDING', ?, ?, ?, ?, ?)",
            (
                (
                    pid,
                    campaign_ids[0],
                    amount,
                    SCOPE,
                    f"seed-p{i}",
                    SESSION_ID,
                    now,
                    now,
                )
                for i, (pid, amount) in enumerate(pending_rows)
            ),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return Seeded(
        campaign_ids=campaign_ids,
        captured=captured,
        pending=pending_rows,
        seconds=time.monotonic() - began,
    )


def _captured_rows(
    campaign_ids: list[str], count: int, now: str
) -> Iterator[tuple[str, str, int, str, str, str, str, str]]:
    for n in range(count):
        yield (
            seed_id("plg", n),
            campaign_ids[n % len(campaign_ids)],
            amount_of(n),
            SCOPE,
            f"seed-{n}",
            SESSION_ID,
            now,
            now,
        )


def query(
    db_path: Path, sql: str, params: tuple[object, ...] = ()
) -> list[tuple[Any, ...]]:
    """Read the database beside its running server (WAL allows it)."""
    with closing(
        sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    ) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> Any:
    return query(db_path, sql, params)[0][0]

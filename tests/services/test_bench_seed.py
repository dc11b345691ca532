"""The benchmark's seed (tests/bench/seed.py) writes the same rows on SQLite
and PostgreSQL: campaigns, CAPTURED pledges with their ledger entries and
totals, PENDING pledges, consistent enough that reconcile finds nothing."""

from __future__ import annotations

from pathlib import Path

from careforall.db import Database
from careforall.services.totals import campaign_totals, reconcile
from careforall.services.unit_of_work import UnitOfWork
from tests.bench import databases, seed


def test_the_seed_is_counted_alike_on_either_database(
    db_url: str, db: Database, uow: UnitOfWork
) -> None:
    target = databases.from_url(db_url)
    seeded = seed.seed(target, campaigns=3, captured=20, pending=4)

    assert len(seeded.campaign_ids) == 3
    assert seed.scalar(target, "SELECT count(*) FROM campaigns") == 3
    by_status = dict(
        seed.query(target, "SELECT status, count(*) FROM pledges GROUP BY status")
    )
    assert by_status == {"CAPTURED": 20, "PENDING": 4}
    assert seed.scalar(target, "SELECT count(*) FROM totals_ledger") == 20
    for i, campaign in enumerate(seeded.campaign_ids):
        amounts = [seed.amount_of(n) for n in range(20) if n % 3 == i]
        figures = campaign_totals(db, campaign)
        assert figures is not None
        assert (figures.raised_cents, figures.pledge_count) == (
            sum(amounts),
            len(amounts),
        )
    pending = seed.query(
        target,
        "SELECT id, amount_cents FROM pledges WHERE status = ? ORDER BY id",
        ("PENDING",),
    )
    assert [tuple(row) for row in pending] == seeded.pending
    assert reconcile(uow) == []


def test_a_database_url_names_its_database() -> None:
    assert databases.from_url("sqlite:////tmp/x.db") == Path("/tmp/x.db")
    pg = databases.from_url("postgresql://u@127.0.0.1:5/db")
    assert pg == databases.Postgres("postgresql+psycopg://u@127.0.0.1:5/db")
    assert databases.url_of(pg) == "postgresql+psycopg://u@127.0.0.1:5/db"
    assert databases.pg_sql("SELECT ? WHERE x LIKE 'a%'") == (
        "SELECT %s WHERE x LIKE 'a%%'"
    )

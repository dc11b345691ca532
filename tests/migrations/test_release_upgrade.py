"""A database made by release 0.2.0 (accounts, campaigns, pledges and their
history, as .ci/fixtures/careforall-0.2.0.sql holds it) upgrades to today's
schema with every row kept and every reference intact."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from careforall.db import migrations_dir, run_migrations
from careforall.settings import Settings

FIXTURE = Path(__file__).resolve().parents[2] / ".ci" / "fixtures"
TABLES = ("users", "campaigns", "pledges", "pledge_transitions", "campaign_totals")


def counts(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES
        }


def test_a_020_database_upgrades_with_every_row_kept(tmp_path: Path) -> None:
    path = tmp_path / "careforall-0.2.0.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript((FIXTURE / "careforall-0.2.0.sql").read_text())
    before = counts(path)
    assert before["users"] and before["campaigns"] and before["pledges"]

    run_migrations(Settings(database_url=f"sqlite:///{path}"))

    assert counts(path) == before
    heads = sorted(
        p.name.split("_")[0] for p in (migrations_dir() / "versions").glob("0*.py")
    )
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (heads[-1],)
        ]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # Accounts made before verification existed are not verified.
        assert conn.execute("SELECT DISTINCT email_verified FROM users").fetchall() == [
            (0,)
        ]

"""`careforall serve` on a brand-new database file: migrations run at start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.system.conftest import Server

pytestmark = pytest.mark.server


def test_serve_migrates_an_empty_database_and_answers(tmp_path: Path) -> None:
    db_path = tmp_path / "brand-new.db"
    assert not db_path.exists()
    server = Server(tmp_path, db_path)
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=5) as http:
            assert http.get("/readyz").json()["ready"] is True
            body = http.post(
                "/graphql", json={"query": "{ campaigns { edges { cursor } } }"}
            ).json()
            assert body == {"data": {"campaigns": {"edges": []}}}
    finally:
        # uvicorn shuts down gracefully, then re-raises SIGTERM: -15 is a clean stop.
        assert server.stop() in (0, -15), server.log_text()
    with sqlite3.connect(db_path) as conn:
        versions = [
            v for (v,) in conn.execute("SELECT version_num FROM alembic_version")
        ]
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master")}
    versions_dir = Path(__file__).resolve().parents[2] / "migrations" / "versions"
    heads = sorted(p.name.split("_")[0] for p in versions_dir.glob("*.py"))
    assert versions == [heads[-1]]
    assert {"pledges", "outbox_events", "campaign_totals", "app_secrets"} <= tables

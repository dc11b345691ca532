"""`careforall serve` on a brand-new database file: migrations run at start."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import Server, free_port

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


def test_several_workers_on_an_in_memory_sqlite_database_are_refused(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREFORALL_")}
    env["CAREFORALL_DATABASE_URL"] = "sqlite:///:memory:"
    done = subprocess.run(
        [sys.executable, "-m", "careforall", "serve", "--workers", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers above 1 needs a database file" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_metrics_port_with_several_workers_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREFORALL_")}
    # Refused before any database is reached, so no server is needed.
    env["CAREFORALL_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    env["CAREFORALL_METRICS_PORT"] = "9464"
    done = subprocess.run(
        [sys.executable, "-m", "careforall", "serve", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "CAREFORALL_METRICS_PORT cannot be used with --workers" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_server_on_the_same_sqlite_file_is_refused(
    tmp_path: Path, template_db: Path, workers: int
) -> None:
    """Two servers on one SQLite file would each send the kept mails and miss
    the other's signed-out guest sessions: the second is refused, the first
    (with its workers) goes on, and once it stops another may serve the file."""
    db_path = tmp_path / "one.db"
    shutil.copy(template_db, db_path)
    first = Server(tmp_path, db_path, serve_args=("--workers", str(workers)))
    first.start(timeout=90)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "careforall", "serve", "--port", str(free_port())],
            cwd=tmp_path,
            env={
                **{
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith("CAREFORALL_")
                },
                "CAREFORALL_DATABASE_URL": f"sqlite:///{db_path}",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2, second.stderr
        assert "another CareForAll server is using" in second.stderr
        assert "Traceback" not in second.stderr
        with httpx.Client(base_url=first.base_url, timeout=5) as http:
            assert http.get("/readyz").json()["ready"] is True
    finally:
        assert first.stop() in (0, -15), first.log_text()
    first.start(timeout=90)
    assert first.stop() in (0, -15), first.log_text()

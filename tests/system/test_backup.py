"""`careforall backup`, `restore` and `reconcile` against real servers: a backup
taken under write load restores every pledge acknowledged before it began, a
restore is refused while a server uses the database, and reconcile repairs
and reports drift."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from careforall.backup import backup
from careforall.cli import main
from careforall.settings import Settings
from tests import factories as f
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD, ServerGQL
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

# `careforall backup` and `restore` copy the SQLite file; PostgreSQL has pg_dump.
pytestmark = [pytest.mark.server, pytest.mark.sqlite_only]

WORKERS = 4


def careforall(*args: str, db_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the `careforall` command as an operator would, on `db_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREFORALL_")}
    env |= {
        "CAREFORALL_DATABASE_URL": f"sqlite:///{db_path}",
        "CAREFORALL_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "careforall", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Load:
    """Donors creating and paying pledges until stopped.

    `acknowledged` keeps (monotonic time the answer arrived, pledge id).
    """

    def __init__(self, server: Server, campaign_id: str) -> None:
        self.server = server
        self.campaign_id = campaign_id
        self.acknowledged: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._donor, daemon=True) for _ in range(WORKERS)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert self.errors == []

    def acked_after(self, moment: float) -> bool:
        with self._lock:
            return any(t > moment for t, _ in self.acknowledged)

    def _donor(self) -> None:
        with httpx.Client(base_url=self.server.base_url, timeout=10.0) as http:
            api = ServerGQL(http)
            token = f.anonymous(api)
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    pledge = f.pledge(api, token, self.campaign_id, amount=100 + n)
                    with self._lock:
                        self.acknowledged.append((time.monotonic(), pledge["id"]))
                    if n % 2:
                        api.ok(
                            f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, token
                        )
                except Exception as exc:  # reported by __exit__
                    self.errors.append(repr(exc))
                    return


def admin_api(http: httpx.Client) -> tuple[ServerGQL, str]:
    api = ServerGQL(http)
    token = api.ok(f.LOGIN, {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})[
        "login"
    ]["token"]
    return api, token


def totals_match_pledges(server: Server, campaign_id: str) -> bool:
    kept = server.query(
        "SELECT raised_cents, pledge_count FROM campaign_totals WHERE campaign_id = ?",
        (campaign_id,),
    )
    summed = server.query(
        "SELECT coalesce(sum(amount_cents), 0), count(*) FROM pledges "
        "WHERE campaign_id = ? AND status = 'CAPTURED'",
        (campaign_id,),
    )
    return kept == summed


def test_a_backup_under_write_load_restores_every_acknowledged_pledge(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = make_server()
    copy = tmp_path / "careforall-backup.db"
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        api = ServerGQL(http)
        campaign_id = f.campaign(api, f.register(api).token)["id"]
        with Load(server, campaign_id) as load:
            wait_until(lambda: len(load.acknowledged) >= 30, timeout=15)
            # In this process, so that `started` is right before the snapshot:
            # a pledge still only in the write-ahead log must be in the copy.
            started = time.monotonic()
            made = backup(Settings(database_url=f"sqlite:///{server.db_path}"), copy)
            finished = time.monotonic()
            # The server kept taking donations while the backup ran, and after.
            wait_until(lambda: load.acked_after(finished), timeout=10)
    before = {pid for t, pid in load.acknowledged if t < started}
    assert made.info.pledges >= len(before)

    restored = make_server(start=False)  # its own new database file
    put_back = careforall("restore", str(copy), db_path=restored.db_path)

    assert put_back.returncode == 0, put_back.stderr
    assert restored.query("PRAGMA integrity_check") == [("ok",)]
    found = {pid for (pid,) in restored.query("SELECT id FROM pledges")}
    assert before <= found
    # A server on the restored file serves them and brings the totals in line.
    restored.start()
    wait_until(restored.settled, timeout=15)
    assert totals_match_pledges(restored, campaign_id)
    with httpx.Client(base_url=restored.base_url, timeout=10.0) as http:
        api, admin = admin_api(http)
        newest = max(before)
        pledge = api.ok(f.PLEDGE, {"id": newest}, admin)["pledge"]
        assert pledge["id"] == newest


def test_restore_is_refused_while_a_server_uses_the_database(
    server: Server, api: ServerGQL, tmp_path: Path
) -> None:
    copy = tmp_path / "backup.db"
    campaign_id = f.campaign(api, f.register(api).token)["id"]
    donor = f.anonymous(api)
    kept = f.pledge(api, donor, campaign_id)
    assert careforall("backup", str(copy), db_path=server.db_path).returncode == 0
    later = f.pledge(api, donor, campaign_id)

    refused = careforall("restore", str(copy), db_path=server.db_path)

    assert refused.returncode == 2
    assert "server is using" in refused.stderr
    assert api.ok(f.PLEDGE, {"id": later["id"]}, donor)["pledge"]["id"] == later["id"]
    assert server.scalar("SELECT count(*) FROM pledges") == 2

    server.stop()
    done = careforall("restore", str(copy), db_path=server.db_path)
    assert done.returncode == 0, done.stderr
    server.start()
    _, admin = admin_api(api.client)
    assert api.ok(f.PLEDGE, {"id": kept["id"]}, admin)["pledge"]["id"] == kept["id"]
    assert api.code(f.PLEDGE, {"id": later["id"]}, admin) == "NOT_FOUND"


def test_reconcile_command_repairs_drift_prints_it_and_audits_it(
    server: Server, api: ServerGQL
) -> None:
    campaign_id = f.campaign(api, f.register(api).token)["id"]
    donor = f.anonymous(api)
    pledge = f.pledge(api, donor, campaign_id, amount=2500)
    api.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    wait_until(lambda: f.totals(api, campaign_id) == (2500, 1))
    wait_until(server.settled)
    with closing(sqlite3.connect(server.db_path, timeout=5)) as conn, conn:
        conn.execute(
            "UPDATE campaign_totals SET raised_cents = 1, pledge_count = 5 "
            "WHERE campaign_id = ?",
            (campaign_id,),
        )

    first = careforall("reconcile", db_path=server.db_path)
    again = careforall("reconcile", db_path=server.db_path)

    assert first.returncode == 0, first.stderr
    assert (
        f"repaired {campaign_id}: raised 1 -> 2500 cents, pledges 5 -> 1"
        in first.stdout
    )
    assert "1 campaign(s) repaired" in first.stdout
    assert "0 campaign(s) repaired" in again.stdout
    assert f.totals(api, campaign_id) == (2500, 1)
    audit = server.query("SELECT actor_user_id, action, detail FROM audit_log")
    assert [(actor, action) for actor, action, _ in audit] == [
        (None, "reconcile"),
        (None, "reconcile"),
    ]
    detail: dict[str, Any] = json.loads(audit[0][2])
    assert (detail["via"], detail["repaired"]) == ("cli", 1)


# --- refusals that need no server -----------------------------------------------


@pytest.fixture
def use_db(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    # main() points the root logger at stdout; tests keep pytest's handlers.
    monkeypatch.setattr(
        "careforall.logs.configure_logging", lambda level="INFO", batched=False: None
    )

    def point_at(url: str) -> None:
        monkeypatch.setenv("CAREFORALL_DATABASE_URL", url)

    return point_at


def test_backup_refuses_to_overwrite_unless_forced(
    template_db: Path,
    tmp_path: Path,
    use_db: Callable[[str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    live = tmp_path / "live.db"
    live.write_bytes(template_db.read_bytes())
    use_db(f"sqlite:///{live}")
    target = tmp_path / "copy.db"
    target.write_text("an older file")

    assert main(["backup", str(target)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert target.read_text() == "an older file"
    assert main(["backup", str(target), "--force"]) == 0
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "live.db"]


def test_backup_and_restore_point_elsewhere_for_other_databases(
    tmp_path: Path, use_db: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    use_db("postgresql://careforall@127.0.0.1/careforall")
    assert main(["backup", str(tmp_path / "x.db")]) == 2
    assert "pg_dump" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "x.db")]) == 2
    assert "pg_dump" in capsys.readouterr().err


def test_restore_refuses_files_that_are_not_careforall_databases(
    template_db: Path,
    tmp_path: Path,
    use_db: Callable[[str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    live = tmp_path / "live.db"
    live.write_bytes(template_db.read_bytes())
    use_db(f"sqlite:///{live}")
    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database " * 100)
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    future = tmp_path / "future.db"
    future.write_bytes(template_db.read_bytes())
    with closing(sqlite3.connect(future)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")

    for bad, says in [
        (tmp_path / "missing.db", "there is no file"),
        (garbage, "not an SQLite database"),
        (other, "not a CareForAll database"),
        (future, "schema version 9999"),
    ]:
        assert main(["restore", str(bad)]) == 2
        assert says in capsys.readouterr().err
    assert live.read_bytes() == template_db.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "future.db",
        "garbage.db",
        "live.db",
        "other.db",
    ]


def test_reconcile_refuses_a_missing_database(
    tmp_path: Path, use_db: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.db"
    use_db(f"sqlite:///{missing}")
    assert main(["reconcile"]) == 2
    assert "there is no database" in capsys.readouterr().err
    assert not missing.exists()

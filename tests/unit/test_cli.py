"""The `careforall` command's day-one subcommands."""

from __future__ import annotations

import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from careforall.cli import _shared_rate_limits, main
from careforall.db import Database, make_engine, run_migrations
from careforall.models import User
from careforall.services import auth
from careforall.services.auth import TokenKeys, verify_password
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings


@pytest.fixture(autouse=True)
def _keep_test_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() points the root logger at stdout; tests keep pytest's handlers.
    monkeypatch.setattr(
        "careforall.logs.configure_logging", lambda level="INFO", batched=False: None
    )


def test_create_admin_makes_an_admin_with_an_argon2_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CAREFORALL_DATABASE_URL", url)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert (
        main(["create-admin", "--email", "Root@Example.org", "--password-stdin"]) == 0
    )
    db = Database(make_engine(Settings(database_url=url)))
    try:
        with db.read() as session:
            user = session.exec(select(User)).one()
    finally:
        db.dispose()
    assert user.email == "root@example.org"
    assert user.role == "ADMIN"
    assert user.password_hash.startswith("$argon2")
    assert verify_password(user.password_hash, "a-long-password")


def _role(url: str, email: str) -> str:
    db = Database(make_engine(Settings(database_url=url)))
    try:
        with db.read() as session:
            user = session.exec(select(User).where(User.email == email)).one()
    finally:
        db.dispose()
    return user.role


def test_create_admin_promotes_an_existing_account_only_with_promote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CAREFORALL_DATABASE_URL", url)
    run_migrations(Settings(database_url=url))
    db = Database(make_engine(Settings(database_url=url)))
    try:
        keys = TokenKeys("s" * 64, timedelta(hours=1), timedelta(hours=1))
        auth.register(
            UnitOfWork(db),
            keys=keys,
            email="ops@example.org",
            password="their own password",
            name="Ops",
        )
    finally:
        db.dispose()
    command = ["create-admin", "--email", "ops@example.org", "--password-stdin"]
    monkeypatch.setattr("sys.stdin", io.StringIO("the operator's password\n"))
    assert main(command) == 2
    assert "--promote" in capsys.readouterr().err
    assert _role(url, "ops@example.org") == "DONOR"
    monkeypatch.setattr("sys.stdin", io.StringIO("the operator's password\n"))
    assert main([*command, "--promote"]) == 0
    assert _role(url, "ops@example.org") == "ADMIN"


def test_create_admin_refuses_a_short_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAREFORALL_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["create-admin", "--email", "a@example.org", "--password-stdin"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CAREFORALL_ADMIN_EMAIL": "a@example.org"}, "set both"),
        ({"CAREFORALL_ADMIN_PASSWORD": "long-enough-1"}, "set both"),
        (
            {
                "CAREFORALL_ADMIN_EMAIL": "a@example.org",
                "CAREFORALL_ADMIN_PASSWORD": "x",
            },
            "at least 8 characters",
        ),
        (
            {
                "CAREFORALL_ADMIN_EMAIL": "nope",
                "CAREFORALL_ADMIN_PASSWORD": "long-enough",
            },
            "valid email",
        ),
    ],
)
def test_serve_refuses_unusable_admin_variables_before_starting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    message: str,
) -> None:
    db_file = tmp_path / "never.db"
    monkeypatch.setenv("CAREFORALL_DATABASE_URL", f"sqlite:///{db_file}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["serve", "--port", "1"]) == 2
    assert message in capsys.readouterr().err
    assert not db_file.exists()  # refused before touching anything


def test_serve_defaults_to_loopback_port_8000() -> None:
    from careforall.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


def test_serve_gives_its_workers_one_rate_limit_store_while_it_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CAREFORALL_RATE_LIMIT_STORE", raising=False)
    with _shared_rate_limits(Settings()):
        store = Path(os.environ["CAREFORALL_RATE_LIMIT_STORE"])
        # The workers read it from the environment; the folder is serve's own.
        assert Settings.from_env().rate_limit_store == str(store)
        assert store.parent.is_dir() and store.parent.stat().st_mode & 0o077 == 0
    assert "CAREFORALL_RATE_LIMIT_STORE" not in os.environ
    assert not store.parent.exists()
    # A file the operator chose is used as it is, and kept.
    monkeypatch.setenv("CAREFORALL_RATE_LIMIT_STORE", "/srv/careforall/counts.sqlite")
    with _shared_rate_limits(Settings.from_env()):
        assert os.environ["CAREFORALL_RATE_LIMIT_STORE"] == (
            "/srv/careforall/counts.sqlite"
        )


def test_serve_hands_the_gil_between_its_threads_every_millisecond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside a busy event loop, the writer and the dispatcher would otherwise
    wait up to Python's 5 ms for the GIL after each SQLite call."""
    import sys

    import uvicorn

    seen: list[float] = []
    monkeypatch.setattr(
        uvicorn, "run", lambda *a, **k: seen.append(sys.getswitchinterval())
    )
    before = sys.getswitchinterval()
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    monkeypatch.setenv("CAREFORALL_DATABASE_URL", url)
    try:
        assert main(["serve", "--port", "8765"]) == 0
    finally:
        sys.setswitchinterval(before)
    assert seen == [0.001]


def test_serve_removes_the_rate_limit_folders_of_killed_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("CAREFORALL_RATE_LIMIT_STORE", raising=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"careforall-ratelimits-{dead.pid}-x1"
    running = tmp_path / f"careforall-ratelimits-{os.getppid()}-x2"
    other = tmp_path / "careforall-other-1"
    for folder in (orphan, running, other):
        folder.mkdir()
        (folder / "counts.sqlite").write_text("")
    with _shared_rate_limits(Settings()):
        store = Path(os.environ["CAREFORALL_RATE_LIMIT_STORE"]).parent
        assert store.name.startswith(f"careforall-ratelimits-{os.getpid()}-")
        assert not orphan.exists()
        assert running.exists() and other.exists()
    assert not store.exists()

"""The `careforall` command's day-one subcommands."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlmodel import select

from careforall.cli import main
from careforall.db import Database, make_engine
from careforall.models import User
from careforall.services.auth import verify_password
from careforall.settings import Settings


@pytest.fixture(autouse=True)
def _keep_test_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() points the root logger at stdout; tests keep pytest's handlers.
    monkeypatch.setattr("careforall.logs.configure_logging", lambda level="INFO": None)


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

"""The `careforall` command: serve, migrate, create-admin."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence

from careforall import __version__
from careforall.settings import Settings, SettingsError

log = logging.getLogger("careforall")


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def serve(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from careforall.app import create_app
    from careforall.db import run_migrations

    run_migrations(settings)
    if settings.provider_webhook_url is None:
        # The simulated provider posts to this process, like a real provider would.
        host_part = _loopback(host)
        if ":" in host_part:
            host_part = f"[{host_part}]"
        settings = settings.with_(
            provider_webhook_url=f"http://{host_part}:{port}/webhooks/payments"
        )
    log.info("serving", extra={"host": host, "port": port, "version": __version__})
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        ws="websockets-sansio",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    return 0


def create_admin(
    settings: Settings, email: str, name: str, password_stdin: bool
) -> int:
    from careforall.db import Database, make_engine, run_migrations
    from careforall.domain.errors import DomainError
    from careforall.services.auth import ensure_admin
    from careforall.services.unit_of_work import UnitOfWork

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password for the admin: ")
    run_migrations(settings)
    db = Database(make_engine(settings))
    try:
        ensure_admin(UnitOfWork(db), email=email, password=password, name=name)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(f"admin {email} is ready")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="careforall", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"careforall {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="apply migrations and serve HTTP")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8000)
    commands.add_parser("migrate", help="apply pending migrations and exit")
    admin = commands.add_parser("create-admin", help="create or promote an admin")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="Admin")
    admin.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from careforall.logs import configure_logging

    configure_logging(settings.log_level)
    if args.command == "serve":
        return serve(settings, args.host, args.port)
    if args.command == "migrate":
        from careforall.db import run_migrations

        run_migrations(settings)
        return 0
    if args.command == "create-admin":
        return create_admin(settings, args.email, args.name, args.password_stdin)
    return 2

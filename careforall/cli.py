"""The `careforall` command: serve and the operator's day-two commands."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from careforall import __version__
from careforall.settings import Settings, SettingsError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from careforall.services.unit_of_work import UnitOfWork

log = logging.getLogger("careforall")
R = TypeVar("R")


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _check_admin_bootstrap(settings: Settings) -> str | None:
    """Why the admin variables cannot be used, or None."""
    from careforall.domain.errors import DomainError
    from careforall.services.auth import check_credentials

    email, password = settings.admin_email, settings.admin_password
    if bool(email) != bool(password):
        return (
            "set both CAREFORALL_ADMIN_EMAIL and CAREFORALL_ADMIN_PASSWORD, or neither"
        )
    if email and password:
        try:
            check_credentials(email, password)
        except DomainError as exc:
            return f"CAREFORALL_ADMIN_EMAIL/PASSWORD: {exc.message}"
    return None


SQLITE_MEMORY_WORKERS_REFUSED = (
    "--workers above 1 needs a database file (or PostgreSQL): the processes "
    "of one server share it, and an in-memory SQLite database is one "
    "process's own."
)


METRICS_PORT_WORKERS_REFUSED = (
    "CAREFORALL_METRICS_PORT cannot be used with --workers above 1: every "
    "worker would open that port. Use CAREFORALL_METRICS_TOKEN instead (each "
    "worker then answers /metrics on the main port, behind the token)."
)


@contextlib.contextmanager
def _shared_rate_limits(settings: Settings) -> Iterator[None]:
    """The workers count rate limits in one file, so a client spreading its
    calls over them gets no more than from one process: a folder of this
    command's own for as long as it serves (unless the operator chose a file)."""
    if settings.rate_limit_store is not None:
        yield
        return
    _remove_orphaned_rate_limit_folders()
    folder = tempfile.mkdtemp(prefix=f"{RATE_LIMIT_FOLDER}{os.getpid()}-")
    os.environ["CAREFORALL_RATE_LIMIT_STORE"] = os.path.join(folder, "counts.sqlite")
    try:
        yield
    finally:
        del os.environ["CAREFORALL_RATE_LIMIT_STORE"]
        shutil.rmtree(folder, ignore_errors=True)


RATE_LIMIT_FOLDER = "careforall-ratelimits-"


def _remove_orphaned_rate_limit_folders() -> None:
    """The folders of `serve` commands that were killed (SIGKILL leaves no
    time to remove them): those of this user named after a process that is
    gone. A folder whose process id was taken by another process stays."""
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        if not name.startswith(RATE_LIMIT_FOLDER):
            continue
        pid = name.removeprefix(RATE_LIMIT_FOLDER).partition("-")[0]
        path = os.path.join(root, name)
        try:
            if not pid.isdigit() or os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # not ours to look at, or gone meanwhile
            continue


def _sqlite_file(settings: Settings) -> bool:
    from careforall.backup import BackupError, sqlite_path

    try:
        sqlite_path(settings)
    except BackupError:
        return False
    return True


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> int:
    import uvicorn

    from careforall.app import create_app
    from careforall.backup import BackupError, hold_serving_lock
    from careforall.concurrency import share_the_gil
    from careforall.db import run_migrations

    problem = _check_admin_bootstrap(settings)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if workers > 1 and settings.is_sqlite and not _sqlite_file(settings):
        print(f"error: {SQLITE_MEMORY_WORKERS_REFUSED}", file=sys.stderr)
        return 2
    if workers > 1 and settings.metrics_port is not None:
        print(f"error: {METRICS_PORT_WORKERS_REFUSED}", file=sys.stderr)
        return 2
    # Each process knows how many serve together (SQLite: they then follow
    # each other's commits, see outbox/change_feed.py).
    settings = settings.with_(workers=workers)
    try:
        # Held until the process ends (uvicorn.run returns just before); with
        # --workers, by this supervising process for all of its workers.
        serving = hold_serving_lock(settings)
    except BackupError as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    run_migrations(settings)
    if settings.provider_webhook_url is None:
        # The simulated provider posts to this process, like a real provider would.
        host_part = _loopback(host)
        if ":" in host_part:
            host_part = f"[{host_part}]"
        settings = settings.with_(
            provider_webhook_url=f"http://{host_part}:{port}/webhooks/payments"
        )
    log.info(
        "serving",
        extra={"host": host, "port": port, "version": __version__, "workers": workers},
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        # uvicorn's httptools protocol, writing each answer in one system call.
        "http": "careforall.http_protocol:HttpProtocol",
        # uvicorn's websockets-sansio protocol, keeping less for each socket.
        "ws": "careforall.ws_protocol:WebSocketProtocol",
        # Browsers offer permessage-deflate, and each connection that takes it
        # keeps zlib's buffers (about 40 KB) to shrink pushes of a few hundred
        # bytes: 5,000 subscribers would hold 200 MB more for nothing.
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 5,
    }
    share_the_gil()
    if workers > 1:
        # Each worker process builds its app from the environment.
        os.environ["CAREFORALL_DATABASE_URL"] = settings.database_url
        os.environ["CAREFORALL_WORKERS"] = str(workers)
        os.environ["CAREFORALL_PROVIDER_WEBHOOK_URL"] = str(
            settings.provider_webhook_url
        )
        with _shared_rate_limits(settings):
            uvicorn.run(
                "careforall.cli:worker_app", factory=True, workers=workers, **options
            )
    else:
        uvicorn.run(create_app(settings), **options)
    if serving is not None:
        serving.release()
    return 0


def worker_app() -> Starlette:
    """The app of one of `serve --workers N`'s processes, which starts afresh
    (spawned) and reads its settings from the environment `serve` left."""
    from careforall.app import create_app
    from careforall.concurrency import share_the_gil
    from careforall.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level, batched=True)
    share_the_gil()
    _end_with_parent()
    return create_app(settings)


def _end_with_parent() -> None:
    """Linux: this worker is sent SIGTERM when `serve`'s process dies, even
    by SIGKILL, so that no worker goes on serving after the serve lock that
    process held is gone (another `serve` could then take the file)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        return  # not Linux: the workers end when their pipes close


_PR_SET_PDEATHSIG = 1


def create_admin(
    settings: Settings,
    email: str,
    name: str,
    password_stdin: bool,
    promote: bool = False,
) -> int:
    from careforall.db import Database, make_engine, run_migrations
    from careforall.domain.errors import DomainError
    from careforall.services.bootstrap import NotPromoted, ensure_admin
    from careforall.services.unit_of_work import UnitOfWork

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password for the admin: ")
    run_migrations(settings)
    db = Database(make_engine(settings))
    try:
        ensure_admin(
            UnitOfWork(db), email=email, password=password, name=name, promote=promote
        )
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except NotPromoted as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(f"admin {email} is ready")
    return 0


def backup_or_restore(settings: Settings, command: str, file: str, force: bool) -> int:
    from pathlib import Path

    from careforall.backup import BackupError, backup, restore

    try:
        if command == "backup":
            result = backup(settings, Path(file), force=force)
        else:
            result = restore(settings, Path(file))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = result.info
    print(
        f"{command}: {result.source} -> {result.target} ({info.pledges} pledges, "
        f"schema {info.revision}, {info.size:,} bytes, {result.seconds:.2f} s)"
    )
    return 0


def _on_database(settings: Settings, work: Callable[[UnitOfWork], R]) -> R | None:
    """Run `work` on the existing database; None once it has said why not."""
    from sqlalchemy.exc import OperationalError

    from careforall.backup import BackupError, require_database
    from careforall.db import Database, make_engine
    from careforall.services.unit_of_work import UnitOfWork
    from careforall.services.writer import is_busy

    try:
        require_database(settings)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    db = Database(make_engine(settings))
    try:
        return work(UnitOfWork(db))
    except OperationalError as exc:
        problem = (
            "the database is busy; try again"
            if is_busy(exc)
            else "the database schema is not current; run `careforall migrate`"
        )
        print(f"error: {problem}", file=sys.stderr)
        return None
    finally:
        db.dispose()


def reconcile(settings: Settings) -> int:
    from careforall.services.admin import reconcile as run_reconcile

    result = _on_database(
        settings, lambda uow: run_reconcile(uow, actor=None, via="cli")
    )
    if result is None:
        return 2
    for d in result.drifts:
        print(
            f"repaired {d.campaign_id}: raised {d.raised_cents_was} -> "
            f"{d.raised_cents} cents, pledges {d.pledge_count_was} -> {d.pledge_count}"
        )
    print(f"reconcile: {len(result.drifts)} campaign(s) repaired")
    return 0


def prune(settings: Settings) -> int:
    from careforall.runtime import media_store
    from careforall.services.retention import RetentionPolicy
    from careforall.services.retention import prune as run_prune

    policy = RetentionPolicy.from_settings(settings)
    media = media_store(settings)
    result = _on_database(
        settings, lambda uow: run_prune(uow, policy=policy, media=media)
    )
    if result is None:
        return 2
    for table, days in policy.days().items():
        kept = f"older than {days:g} days" if days > 0 else "kept forever"
        print(f"{table}: {result.deleted[table]} row(s) deleted ({kept})")
    print(f"media: {result.files_deleted} file(s) of replaced images deleted")
    print(f"prune: {result.total} row(s) deleted in {result.seconds:.2f} s")
    return 0


def reconcile_payments(settings: Settings, older_than_minutes: float | None) -> int:
    """Ask Stripe about pledges left PENDING or AUTHORIZED, and apply its answers."""
    from datetime import timedelta

    from careforall.payments.provider import ProviderUnavailable
    from careforall.payments.stripe import StripeProvider
    from careforall.services.payment_reconcile import reconcile_payments as run

    if settings.stripe is None:
        print(
            "error: payments reconcile asks the provider, which needs "
            "CAREFORALL_PAYMENT_PROVIDER=stripe (the simulation needs none)",
            file=sys.stderr,
        )
        return 2
    minutes = (
        settings.stripe.reconcile_after_minutes
        if older_than_minutes is None
        else older_than_minutes
    )

    config = settings.stripe

    def work(uow: UnitOfWork) -> list[Any]:
        provider = StripeProvider(uow.db, config)
        try:
            return run(uow.db, provider=provider, older_than=timedelta(minutes=minutes))
        finally:
            provider.close()

    try:
        settled = _on_database(settings, work)
    except ProviderUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settled is None:
        return 2
    for s in settled:
        print(f"{s.pledge_id}: {s.from_status} -> {s.to_status}")
    print(f"payments reconcile: {len(settled)} pledge(s) moved")
    return 0


def recurring_run(settings: Settings, now_text: str | None) -> int:
    """Charge every recurring gift's period due by `now_text` (default: now),
    through the configured provider (with Stripe: the saved cards, off-session)."""
    from datetime import datetime

    from careforall.domain.clock import to_utc, utcnow
    from careforall.payments.provider import PaymentProvider
    from careforall.payments.simulated import SimulatedProvider
    from careforall.payments.stripe import StripeProvider
    from careforall.services.recurring_charges import RunResult, run_due

    try:
        now = to_utc(datetime.fromisoformat(now_text)) if now_text else utcnow()
    except ValueError:
        print(f"error: --now {now_text!r} is not an ISO-8601 time", file=sys.stderr)
        return 2
    config = settings.stripe

    def work(uow: UnitOfWork) -> RunResult:
        provider: PaymentProvider = (
            StripeProvider(uow.db, config)
            if config is not None
            else SimulatedProvider(uow.db)
        )
        try:
            return run_due(uow.db, provider=provider, now=now)
        finally:
            if isinstance(provider, StripeProvider):
                provider.close()

    result = _on_database(settings, work)
    if result is None:
        return 2
    print(
        f"recurring run to {now.isoformat()}: {result.charged} period(s) charged, "
        f"{result.declined} declined, {result.skipped} skipped; "
        f"{result.paused} plan(s) paused, {result.ended} ended"
    )
    for plan_id in result.unknown_cards:
        print(
            f"warning: {plan_id} was not charged: its card was saved with another "
            f"payment provider than {settings.payment_provider}",
            file=sys.stderr,
        )
    if result.unanswered is not None:
        print(
            f"error: stopped early, the payment provider did not answer "
            f"({result.unanswered}); run it again: nothing is charged twice",
            file=sys.stderr,
        )
        return 2
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
    serve_cmd.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes serving together (one core each; on SQLite "
        "they share the file and follow each other's commits)",
    )
    commands.add_parser("migrate", help="apply pending migrations and exit")
    admin = commands.add_parser("create-admin", help="create or promote an admin")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="Admin")
    admin.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    admin.add_argument(
        "--promote",
        action="store_true",
        help="make an existing account of this email an admin (its password "
        "becomes the one given and its earlier tokens end)",
    )
    backup_cmd = commands.add_parser(
        "backup", help="copy the SQLite database consistently, even while serving"
    )
    backup_cmd.add_argument("file")
    backup_cmd.add_argument(
        "--force", action="store_true", help="replace FILE if it exists"
    )
    restore_cmd = commands.add_parser(
        "restore", help="replace the database with a backup (server stopped)"
    )
    restore_cmd.add_argument("file")
    commands.add_parser(
        "reconcile", help="recompute campaign totals from pledges; print repairs"
    )
    payments = commands.add_parser("payments", help="the payment provider")
    payment_commands = payments.add_subparsers(dest="payments_command", required=True)
    reconcile_cmd = payment_commands.add_parser(
        "reconcile",
        help="ask Stripe about pledges left PENDING or AUTHORIZED and apply its "
        "answers (webhooks that never came)",
    )
    reconcile_cmd.add_argument(
        "--older-than-minutes",
        type=float,
        default=None,
        help="only pledges untouched this long (default: "
        "CAREFORALL_STRIPE_RECONCILE_AFTER_MINUTES, 60)",
    )
    commands.add_parser(
        "prune",
        help="delete delivered outbox events, old webhook log rows and delivered "
        "provider webhooks past their retention (CAREFORALL_RETENTION_*)",
    )
    recurring_cmd = commands.add_parser("recurring", help="recurring gifts")
    recurring_commands = recurring_cmd.add_subparsers(
        dest="recurring_command", required=True
    )
    run_cmd = recurring_commands.add_parser(
        "run", help="charge every period due by --now (default: now) and exit"
    )
    run_cmd.add_argument(
        "--now", help="ISO-8601 time (UTC unless it says); catch up or move time"
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

    configure_logging(settings.log_level, batched=args.command == "serve")
    if args.command == "serve":
        return serve(settings, args.host, args.port, args.workers)
    if args.command == "migrate":
        from careforall.db import run_migrations

        run_migrations(settings)
        return 0
    if args.command == "create-admin":
        return create_admin(
            settings, args.email, args.name, args.password_stdin, args.promote
        )
    if args.command in ("backup", "restore"):
        force = getattr(args, "force", False)
        return backup_or_restore(settings, args.command, args.file, force)
    if args.command == "reconcile":
        return reconcile(settings)
    if args.command == "prune":
        return prune(settings)
    if args.command == "payments":
        return reconcile_payments(settings, args.older_than_minutes)
    if args.command == "recurring":
        return recurring_run(settings, args.now)
    return 2

"""Shared fixtures: a migrated SQLite file per test, the app with its lifespan,
a `gql` helper that speaks GraphQL over HTTP, and real `careforall serve`
processes on 127.0.0.1 (their output is printed when a test fails)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from careforall.app import create_app
from careforall.db import Database, make_engine, run_migrations
from careforall.services import passwords
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests import postgres
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD, GQL, ServerGQL
from tests.helpers.databases import databases_under_test, shared_by_processes
from tests.helpers.server import Server
from tests.helpers.stripe_standin import StripeStandIn, running

# Fixtures of the helper modules, for every test that names them: a real SMTP
# server (`mail_server`) and the settings that mail through it (`mailing`).
pytest_plugins = ["tests.helpers.smtp", "tests.helpers.mails"]


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with cheap parameters: most tests are not about its cost
    (the defaults take ~0.1 s a hash). Servers in their own process keep them."""
    monkeypatch.setattr(
        passwords,
        "_HASHER",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


LOOKUP_FLAGS = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


@pytest.fixture(autouse=True)
def root_logger_kept() -> Iterator[None]:
    """A test that runs the CLI in-process (`main([...])`) points the root
    logger at the stdout pytest captured for it; the next test gets pytest's
    handlers and level back, and the test's own handler is closed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    # configure_logging also turns off logging's caller, thread and process
    # lookups, which pytest's own handlers show.
    flags = {name: getattr(logging, name) for name in LOOKUP_FLAGS}
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in flags.items():
        setattr(logging, name, value)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrations run once; each test copies the result."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    run_migrations(Settings(database_url=f"sqlite:///{path}"))
    return path


# Run by three xdist workers (pyproject.toml). The tests that start real
# servers and measure them stay on one worker per folder, in order (a fault
# test never competes with another fault test), and so do the browser tests.
_GROUPS = {"faults": "faults", "system": "system", "browser": "browser"}


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not config.pluginmanager.hasplugin("xdist"):  # `-p no:xdist`: one process
        return
    for item in items:
        folder = item.path.parent.name
        if folder in _GROUPS:
            item.add_marker(pytest.mark.xdist_group(_GROUPS[folder]))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a database runs once per database kind, except
    those marked `sqlite_only` or `postgres_only` (what they test is that
    database's own) and `any_database` (slow, and the same on either: run on
    SQLite).

    A test marked `processes(1, 2, ...)` runs once per database and count of
    server processes (its `processes` argument) that can share it: several
    processes on PostgreSQL, and on SQLite too when the marker says
    `sqlite_workers=True` (one `serve --workers N`, tests/helpers/workers.py
    `serve_processes`), so no case exists that could only skip.
    """
    if "database_kind" not in metafunc.fixturenames:
        return
    kinds = databases_under_test()
    marked = metafunc.definition.get_closest_marker
    if marked("sqlite_only") or marked("any_database"):
        kinds = [kind for kind in kinds if kind == "sqlite"]
    if marked("postgres_only"):
        kinds = [kind for kind in kinds if kind == "postgresql"]
    counts = metafunc.definition.get_closest_marker("processes")
    if counts is None:
        metafunc.parametrize("database_kind", kinds)
        return
    metafunc.parametrize(
        ("database_kind", "processes"),
        [
            (kind, count)
            for kind in kinds
            for count in counts.args
            if count == 1
            or shared_by_processes(kind)
            or counts.kwargs.get("sqlite_workers", False)
        ],
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server's URL, with the migrated template database made.

    CAREFORALL_TEST_POSTGRES_URL names one; otherwise a throwaway cluster is
    started from the installed binaries. Without either the PostgreSQL tests
    skip, except in CI (CI is set), where they fail: CI must install it.
    """
    url = os.environ.get("CAREFORALL_TEST_POSTGRES_URL")
    cluster = None
    if not url:
        cluster = postgres.start_cluster()
        if cluster is None:
            if os.environ.get("CI"):
                pytest.fail("PostgreSQL is missing: CI must install postgresql")
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
        url = cluster.url
    try:
        postgres.make_template(url)
        yield url
    finally:
        if cluster is not None:
            cluster.shutdown()


@pytest.fixture(scope="session")
def postgres_databases(postgres_server: str) -> Iterator[postgres.DatabasePool]:
    pool = postgres.DatabasePool(postgres_server)
    yield pool
    pool.close()


@pytest.fixture
def db_url(
    request: pytest.FixtureRequest,
    database_kind: str,
    tmp_path: Path,
    template_db: Path,
) -> Iterator[str]:
    if database_kind == "postgresql":
        pool: postgres.DatabasePool = request.getfixturevalue("postgres_databases")
        url = pool.acquire()
        yield url
        pool.release(url)
        return
    path = tmp_path / "careforall.db"
    shutil.copy(template_db, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        rate_limits=False,
        outbox_base_delay=0.05,
        webhook_retry_base_delay=0.05,
        # Most tests want the campaigns they create live at once; the review
        # tests turn it on.
        campaign_review="off",
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(make_engine(settings))
    yield database
    database.dispose()


@pytest.fixture
def uow(db: Database) -> UnitOfWork:
    return UnitOfWork(db)


@pytest.fixture
def app_factory(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """Start the app (lifespan included) with changed settings.

    For example `app_factory(auto_capture=False)`.
    """
    clients: list[TestClient] = []

    def start(**changes: Any) -> TestClient:
        client = TestClient(create_app(settings.with_(**changes)))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(app_factory: Callable[..., TestClient]) -> TestClient:
    return app_factory()


@pytest.fixture
def gql(client: TestClient) -> GQL:
    return GQL(client)


# --- real servers (tests/helpers/server.py), for sockets, crashes and restarts ---


@pytest.fixture
def make_server(
    tmp_path: Path, template_db: Path, database_kind: str, db_url: str
) -> Iterator[Callable[..., Server]]:
    """Make (and start) a server on a fresh copy of the migrated template database.

    On PostgreSQL every server of a test shares the test's database (several
    processes, one database); on SQLite each gets a file of its own unless
    `share_with` names a server whose file it serves too.
    """
    servers: list[Server] = []

    def make(
        *, start: bool = True, share_with: Server | None = None, **env: str
    ) -> Server:
        workdir = tmp_path / f"server{len(servers)}"
        workdir.mkdir()
        if share_with is not None:
            server = Server(
                workdir,
                share_with._db_path,
                database_url=share_with.database_url,
                **env,
            )
        elif database_kind == "postgresql":
            server = Server(workdir, database_url=db_url, **env)
        else:
            db_path = workdir / "careforall.db"
            shutil.copy(template_db, db_path)
            server = Server(workdir, db_path, **env)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        try:
            server.stop()
        finally:
            # Captured output is shown only when the test fails.
            print(f"===== {server.log_path} =====\n{server.log_text()}")


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
        yield client


@pytest.fixture
def api(http: httpx.Client) -> ServerGQL:
    return ServerGQL(http)


@pytest.fixture
def promtool() -> str:
    """Path of Prometheus's `promtool` (Debian package `prometheus`).

    Skipped where it is not installed, except in CI (CI is set), where its
    absence fails the test: CI must install it.
    """
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: CI must install the package prometheus")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


@pytest.fixture
def stripe_standin() -> Iterator[StripeStandIn]:
    """The local stand-in for Stripe's API (tests/helpers/stripe_standin.py);
    a test points its webhooks somewhere with `webhook_url`."""
    with running() as standin:
        yield standin

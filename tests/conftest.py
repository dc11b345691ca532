"""Shared fixtures: a migrated SQLite file per test, the app with its lifespan,
and a `gql` helper that speaks GraphQL over HTTP."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from careforall.app import create_app
from careforall.db import Database, make_engine, run_migrations
from careforall.services import auth
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests import postgres

ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "admin-password-1"


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with cheap parameters: most tests are not about its cost
    (the defaults take ~0.1 s a hash). Servers in their own process keep them."""
    monkeypatch.setattr(
        auth, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrations run once; each test copies the result."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    run_migrations(Settings(database_url=f"sqlite:///{path}"))
    return path


def databases_under_test() -> list[str]:
    """The databases the suite runs on: CAREFORALL_TEST_DATABASES, by default
    both ("sqlite,postgresql")."""
    raw = os.environ.get("CAREFORALL_TEST_DATABASES") or "sqlite,postgresql"
    return [kind.strip() for kind in raw.split(",") if kind.strip()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a database runs once per database kind, except
    those marked `sqlite_only` or `postgres_only` (what they test is that
    database's own)."""
    if "database_kind" not in metafunc.fixturenames:
        return
    kinds = databases_under_test()
    if metafunc.definition.get_closest_marker("sqlite_only"):
        kinds = [kind for kind in kinds if kind == "sqlite"]
    if metafunc.definition.get_closest_marker("postgres_only"):
        kinds = [kind for kind in kinds if kind == "postgresql"]
    metafunc.parametrize("database_kind", kinds)


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


class GQL:
    """POST a GraphQL document; returns the JSON body."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
        )
        assert response.status_code < 500, response.text
        body: dict[str, Any] = response.json()
        return body

    def ok(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        body = self(query, variables, token)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    def code(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> str:
        """The first error's contract code (the call must have failed)."""
        body = self(query, variables, token)
        assert body.get("errors"), f"expected an error, got {body}"
        return str(body["errors"][0]["extensions"]["code"])


@pytest.fixture
def gql(client: TestClient) -> GQL:
    return GQL(client)


def wait_for(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02
) -> Any:
    """Poll until `predicate()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"condition not met within {timeout}s (last: {value!r})"
            )
        time.sleep(interval)


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

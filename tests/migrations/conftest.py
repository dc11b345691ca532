"""A fresh database, not migrated at all, of each kind the suite runs on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from careforall.db import make_engine
from careforall.settings import Settings
from tests import postgres
from tests.migrations.seed import OldDatabase


@pytest.fixture
def empty_database_url(
    request: pytest.FixtureRequest, database_kind: str, tmp_path: Path
) -> Iterator[str]:
    """An empty database (not the migrated template the other tests copy)."""
    if database_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    server: str = request.getfixturevalue("postgres_server")
    url = postgres.create_database(server, template=None)
    try:
        yield url
    finally:
        postgres.drop_database(server, url)


@pytest.fixture
def old_database(empty_database_url: str) -> Iterator[OldDatabase]:
    settings = Settings(database_url=empty_database_url)
    engine = make_engine(settings)
    try:
        yield OldDatabase(settings, engine)
    finally:
        engine.dispose()

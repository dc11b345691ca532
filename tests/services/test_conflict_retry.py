"""A write that PostgreSQL rolled back for a deadlock or a serialization
failure runs again (Runtime.write); other database errors do not."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from careforall import metrics
from careforall.domain.errors import ServiceBusy
from careforall.runtime import CONFLICT_ATTEMPTS, Runtime


@dataclass
class _PgError(Exception):
    sqlstate: str


def _failing(sqlstate: str, times: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("UPDATE ...", {}, _PgError(sqlstate))
        return "committed"

    return calls, write


def _runtime(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_deadlocked_write_runs_again_until_it_passes(
    client: TestClient, sqlstate: str
) -> None:
    calls, write = _failing(sqlstate, times=2)
    before = metrics.DB_CONFLICT_RETRIES._value.get()
    result = asyncio.run(_runtime(client).write(write))  # type: ignore[arg-type]
    assert result == "committed"
    assert len(calls) == 3
    assert metrics.DB_CONFLICT_RETRIES._value.get() - before == 2


def test_a_write_that_keeps_conflicting_is_busy_not_a_crash(client: TestClient) -> None:
    calls, write = _failing("40P01", times=CONFLICT_ATTEMPTS)
    with pytest.raises(ServiceBusy):
        asyncio.run(_runtime(client).write(write))  # type: ignore[arg-type]
    assert len(calls) == CONFLICT_ATTEMPTS


def test_other_database_errors_are_not_run_again(client: TestClient) -> None:
    calls, write = _failing("23502", times=1)  # not null violation
    with pytest.raises(OperationalError):
        asyncio.run(_runtime(client).write(write))  # type: ignore[arg-type]
    assert len(calls) == 1

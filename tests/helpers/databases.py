"""Which databases the suite runs on."""

from __future__ import annotations

import os


def databases_under_test() -> list[str]:
    """The databases the suite runs on: CAREFORALL_TEST_DATABASES, by default
    both ("sqlite,postgresql")."""
    raw = os.environ.get("CAREFORALL_TEST_DATABASES") or "sqlite,postgresql"
    return [kind.strip() for kind in raw.split(",") if kind.strip()]


def shared_by_processes(kind: str) -> bool:
    """Whether several separate servers can serve one database of this kind:
    PostgreSQL's, not a SQLite file (one `serve` per file; its `--workers`
    share it, see tests/helpers/workers.py)."""
    return kind == "postgresql"

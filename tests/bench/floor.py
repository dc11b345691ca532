"""The floor: the least a Starlette + SQLite endpoint can cost on this machine.

`python -m tests.bench.floor --db PATH --port N [--workers W]` serves, with
the same uvicorn settings as `careforall serve` (and, like it, W processes
on one file); `--db postgresql://...` serves a PostgreSQL database instead
(psycopg, one connection, a commit per insert):

- `POST /read` with `{"id": n}`: reads one row, answers it as JSON;
- `POST /insert` with `{"amount": n}`: inserts one row and commits it
  (WAL, `synchronous=FULL`: one durable commit per request);
- `GET /ready`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ROWS = 1_000


def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, amount INTEGER NOT NULL)"
    )
    if conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO items (id, name, amount) VALUES (?, ?, ?)",
            ((i, f"item {i}", i * 100) for i in range(1, ROWS + 1)),
        )
        conn.execute("COMMIT")
    return conn


class Postgres:
    """The same table and statements on PostgreSQL."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS items (id BIGSERIAL PRIMARY KEY, "
            "name TEXT NOT NULL, amount BIGINT NOT NULL)"
        )
        if self.conn.execute("SELECT count(*) FROM items").fetchone() == (0,):
            with self.conn.cursor().copy("COPY items (name, amount) FROM STDIN") as c:
                for i in range(1, ROWS + 1):
                    c.write_row((f"item {i}", i * 100))

    def read(self, item: int) -> tuple[Any, ...] | None:
        return self.conn.execute(
            "SELECT id, name, amount FROM items WHERE id = %s", (item,)
        ).fetchone()

    def insert(self, amount: int) -> int:
        with self.conn.transaction():
            row = self.conn.execute(
                "INSERT INTO items (name, amount) VALUES (%s, %s) RETURNING id",
                ("pledge", amount),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.conn.close()


class Sqlite:
    def __init__(self, path: Path) -> None:
        self.conn = open_db(path)

    def read(self, item: int) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(
            "SELECT id, name, amount FROM items WHERE id = ?", (item,)
        ).fetchone()
        return row

    def insert(self, amount: int) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        cursor = self.conn.execute(
            "INSERT INTO items (name, amount) VALUES (?, ?)", ("pledge", amount)
        )
        self.conn.execute("COMMIT")
        return int(cursor.lastrowid or 0)

    def close(self) -> None:
        self.conn.close()


def _store(db: str) -> Sqlite | Postgres:
    return Postgres(db) if db.startswith("postgresql://") else Sqlite(Path(db))


def create_app(db: str) -> Starlette:
    state: dict[str, Sqlite | Postgres] = {}

    async def read(request: Request) -> Response:
        data = json.loads(await request.body())
        row = state["db"].read(int(data["id"]))
        assert row is not None
        return JSONResponse({"id": row[0], "name": row[1], "amount": row[2]})

    async def insert(request: Request) -> Response:
        data = json.loads(await request.body())
        return JSONResponse({"id": state["db"].insert(int(data["amount"]))})

    async def ready(_: Request) -> Response:
        return JSONResponse({"ready": True})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        state["db"] = _store(db)
        try:
            yield
        finally:
            state["db"].close()

    return Starlette(
        routes=[
            Route("/read", read, methods=["POST"]),
            Route("/insert", insert, methods=["POST"]),
            Route("/ready", ready, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


_DB_VARIABLE = "CAREFORALL_FLOOR_DB"


def app_from_env() -> Starlette:
    """One worker's app (`--workers` above 1): the file is in the environment."""
    return create_app(os.environ[_DB_VARIABLE])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="a SQLite file or postgresql://")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_config": None,
        "ws": "websockets-sansio",
        "lifespan": "on",
        "timeout_graceful_shutdown": 5,
    }
    if args.workers == 1:
        uvicorn.run(create_app(args.db), **options)
        return
    _store(args.db).close()  # made once, before the workers open it
    os.environ[_DB_VARIABLE] = args.db
    uvicorn.run(
        "tests.bench.floor:app_from_env",
        factory=True,
        workers=args.workers,
        **options,
    )


if __name__ == "__main__":
    main()

"""The floor: the least a Starlette + SQLite endpoint can cost on this machine.

`python -m tests.bench.floor --db PATH --port N [--workers W]` serves, with
the same uvicorn settings as `careforall serve` (and, like it, W processes
on one file):

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


def create_app(path: Path) -> Starlette:
    state: dict[str, sqlite3.Connection] = {}

    async def read(request: Request) -> Response:
        data = json.loads(await request.body())
        row = (
            state["db"]
            .execute(
                "SELECT id, name, amount FROM items WHERE id = ?",
                (int(data["id"]),),
            )
            .fetchone()
        )
        return JSONResponse({"id": row[0], "name": row[1], "amount": row[2]})

    async def insert(request: Request) -> Response:
        data = json.loads(await request.body())
        db = state["db"]
        db.execute("BEGIN IMMEDIATE")
        cursor = db.execute(
            "INSERT INTO items (name, amount) VALUES (?, ?)",
            ("pledge", int(data["amount"])),
        )
        db.execute("COMMIT")
        return JSONResponse({"id": cursor.lastrowid})

    async def ready(_: Request) -> Response:
        return JSONResponse({"ready": True})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        state["db"] = open_db(path)
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
    return create_app(Path(os.environ[_DB_VARIABLE]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
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
    open_db(args.db).close()  # made once, before the workers open it
    os.environ[_DB_VARIABLE] = str(args.db)
    uvicorn.run(
        "tests.bench.floor:app_from_env",
        factory=True,
        workers=args.workers,
        **options,
    )


if __name__ == "__main__":
    main()

"""Liveness and readiness."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse

from careforall import __version__


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


def readiness(state: State) -> dict[str, bool]:
    """Each readiness check of the app whose state this is (also for /metrics).

    The database must answer reads and take writes (see WriteHealth). Blocking
    (a short write probe at most): call it in a worker thread.
    """
    runtime = getattr(state, "runtime", None)
    return {
        "database": bool(
            runtime is not None and runtime.db.ping() and runtime.writes.writable()
        ),
        "outbox": bool(getattr(state, "dispatcher", None) and state.dispatcher.alive),
        "webhook_sender": bool(getattr(state, "sender", None) and state.sender.alive),
    }


async def readyz(request: Request) -> JSONResponse:
    checks = await run_in_threadpool(readiness, request.app.state)
    ready = all(checks.values())
    return JSONResponse(
        {"ready": ready, "checks": checks}, status_code=200 if ready else 503
    )

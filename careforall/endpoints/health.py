"""Liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from careforall import __version__


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    runtime = getattr(state, "runtime", None)
    checks = {
        "database": bool(runtime is not None and runtime.db.ping()),
        "outbox": bool(getattr(state, "dispatcher", None) and state.dispatcher.alive),
        "webhook_sender": bool(getattr(state, "sender", None) and state.sender.alive),
    }
    ready = all(checks.values())
    return JSONResponse(
        {"ready": ready, "checks": checks}, status_code=200 if ready else 503
    )

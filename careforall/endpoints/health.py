"""Liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from careforall import __version__, metrics


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


async def metrics_endpoint(request: Request) -> Response:
    # Readiness is checked at scrape time, so the gauge is never stale.
    checks = await run_in_threadpool(readiness, request.app.state)  # may probe
    metrics.READY.set(1 if all(checks.values()) else 0)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""Liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

import hmac
import os

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from careforall import __version__, metrics


async def healthz(request: Request) -> JSONResponse:
    # The process id tells which of `serve --workers N`'s processes answered.
    return JSONResponse({"status": "ok", "version": __version__, "pid": os.getpid()})


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


def _authorized(request: Request, token: str | None) -> bool:
    """No token configured, or the request's bearer token is that one."""
    if token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


async def scrape(request: Request, state: State) -> Response:
    """The Prometheus text for the app whose state this is, if the request
    carries CAREFORALL_METRICS_TOKEN (when one is set)."""
    if not _authorized(request, state.settings.metrics_token):
        return Response(
            "a bearer token is needed (CAREFORALL_METRICS_TOKEN)\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    # Readiness is checked at scrape time, so the gauge is never stale.
    checks = await run_in_threadpool(readiness, state)  # may probe
    metrics.READY.set(1 if all(checks.values()) else 0)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def metrics_endpoint(request: Request) -> Response:
    if request.app.state.settings.metrics_port is not None:
        # Served on its own port only (CAREFORALL_METRICS_PORT).
        return Response("not found\n", status_code=404)
    return await scrape(request, request.app.state)

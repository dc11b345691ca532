"""ASGI middleware: per-request metrics and one log line per request."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from careforall import metrics

log = logging.getLogger("careforall.http")

# Bounded label values: any other path counts as "other".
KNOWN_ROUTES = (
    "/graphql",
    "/webhooks/payments",
    "/metrics",
    "/healthz",
    "/readyz",
    "/",
)


def route_label(path: str) -> str:
    if path in KNOWN_ROUTES:
        return path
    return "static" if "." in path.rsplit("/", 1)[-1] else "other"


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route, method = route_label(scope["path"]), scope["method"]
            metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
            metrics.HTTP_LATENCY.labels(route, method).observe(elapsed)
            if log.isEnabledFor(logging.INFO) and route not in (
                "/metrics",
                "/healthz",
                "/readyz",
            ):
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": scope["path"][:200],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )

"""ASGI middleware: per-request metrics, a span and one log line per request.

Each request gets an id (a sane incoming `X-Request-ID`, else a new one) that
is echoed in the response and written on every log line made for it; a
`traceparent` header makes the request's span a child of the caller's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import time
from itertools import islice

from opentelemetry.trace import INVALID_SPAN, SpanKind
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from careforall import metrics, tracing
from careforall.logs import (
    CURRENT_REQUEST,
    RequestLog,
    direct_handler,
    encoded_fields,
    line_head,
    log_line,
    timestamp,
)
from careforall.middleware.http import HTTPMiddleware
from careforall.redaction import cleared_with_secrets, plain_id

log = logging.getLogger("careforall.http")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Probed often and uneventful: their log line only at DEBUG.
QUIET_ROUTES = ("/metrics", "/healthz", "/readyz")
# No span for these (nor for the web app's files).
UNTRACED_ROUTES = (*QUIET_ROUTES, "/", "static")

# Bounded label values: any other path counts as "other".
KNOWN_ROUTES = (
    "/graphql",
    "/webhooks/payments",
    "/metrics",
    "/healthz",
    "/readyz",
    "/admin/export/donations.csv",
    "/account/data",
    "/reset-password",
    "/verify-email",
    "/unsubscribe",
    "/",
)


def route_label(path: str) -> str:
    if path in KNOWN_ROUTES:
        return path
    return "static" if "." in path.rsplit("/", 1)[-1] else "other"


# A request id must be unique, not secret: 128 bits from a generator seeded
# from the system's randomness (afresh in a forked child), as uuid4's hex
# would be, without its system call for every request.
_NEW_IDS = random.Random()
os.register_at_fork(after_in_child=_NEW_IDS.seed)


def request_id(given: str | None) -> str:
    """The caller's request id when it is short and plain, else a new one."""
    if given is not None and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return f"{_NEW_IDS.getrandbits(128):032x}"


class RequestMetrics(HTTPMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        headers = Headers(scope=scope)
        entry = RequestLog(request_id=request_id(headers.get(REQUEST_ID_HEADER)))
        route, method = route_label(scope["path"]), scope["method"]
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = entry.request_id
            await send(message)

        token = CURRENT_REQUEST.set(entry)
        quiet = route in QUIET_ROUTES
        try:
            with (
                tracing.span(
                    f"{method} {route}",
                    parent=tracing.context_from_headers(headers),
                    kind=SpanKind.SERVER,
                    attributes={"http.request.method": method, "http.route": route},
                )
                if route not in UNTRACED_ROUTES
                else contextlib.nullcontext(INVALID_SPAN)
            ) as span:
                try:
                    await self.app(scope, receive, send_wrapper)
                finally:
                    elapsed = time.perf_counter() - start
                    metrics.labelled(
                        metrics.HTTP_REQUESTS, route, method, str(status)
                    ).inc()
                    metrics.labelled(metrics.HTTP_LATENCY, route, method).observe(
                        elapsed
                    )
                    if span.is_recording():
                        span.set_attribute("http.response.status_code", status)
                        if status >= 500:
                            tracing.fail(span, f"HTTP {status}")
                    self._log(entry, method, scope["path"], status, elapsed, quiet)
        finally:
            CURRENT_REQUEST.reset(token)

    @staticmethod
    def _log(
        entry: RequestLog,
        method: str,
        path: str,
        status: int,
        elapsed: float,
        quiet: bool,
    ) -> None:
        level = logging.DEBUG if quiet else logging.INFO
        if status >= 500:
            # A probe's 503 ("not ready") is the answer it asks for; the
            # readiness change itself is logged once, as a warning.
            level = logging.WARNING if quiet and status == 503 else logging.ERROR
        if not log.isEnabledFor(level):
            return
        handler = direct_handler(log, level)
        request_id = entry.request_id
        if handler is None or not plain_id(request_id) or tracing.enabled():
            fields = _fields(entry, method, path, status, round(elapsed * 1000, 2))
            log_line(log, level, "request", fields)
            return
        # What most lines share is made and redacted once; the time, the
        # request id and the duration go between its parts.
        key = (
            level,
            method,
            path,
            status,
            entry.operation,
            entry.operation_type,
            entry.principal,
            entry.user_id,
            *entry.errors,
        )
        parts = _PARTS.get(key)
        if parts is None:
            parts = _parts(level, entry, method, path, status)
            if len(_PARTS) >= 2048:
                _PARTS.clear()
            _PARTS[key] = parts
        start, middle, end = parts
        handler.write_line(
            f'{{"time":"{timestamp(time.time())}",{start}{request_id}{middle}'
            f"{elapsed * 1000:.2f}{end}",
            level,
        )


# The constant parts of request lines, by what they hold.
_PARTS: dict[tuple[object, ...], tuple[str, str, str]] = cleared_with_secrets({})


def _parts(
    level: int, entry: RequestLog, method: str, path: str, status: int
) -> tuple[str, str, str]:
    """A request line but for its time, request id (plain: written as it
    is) and duration, in the three parts that go around the last two."""
    fields = _fields(entry, method, path, status, 0.0)
    before = dict(islice(fields.items(), 3))
    after = dict(islice(fields.items(), 4, None))
    head = line_head(log.name, logging.getLevelName(level), "request")
    start = head + ',"request_id":"'
    middle = '",' + encoded_fields(before)[1:-1] + ',"duration_ms":'
    end = ("," + encoded_fields(after)[1:-1] if after else "") + "}"
    return start, middle, end


def _fields(
    entry: RequestLog, method: str, path: str, status: int, duration_ms: float
) -> dict[str, object]:
    fields: dict[str, object] = {
        "method": method,
        "path": path[:200],
        "status": status,
        "duration_ms": duration_ms,
    }
    if entry.operation is not None:
        fields["operation"] = entry.operation
        fields["operation_type"] = entry.operation_type
        fields["principal"] = entry.principal
        if entry.user_id is not None:
            fields["user_id"] = entry.user_id
        if entry.errors:
            fields["errors"] = entry.errors
    return fields

"""Prometheus collectors (created once per process) and the `/metrics` endpoint."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from careforall.domain.events import Event, PledgeCreated, PledgeStatusChanged

HTTP_REQUESTS = Counter(
    "careforall_http_requests_total",
    "HTTP requests answered, by route and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "careforall_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
GRAPHQL_ERRORS = Counter(
    "careforall_graphql_errors_total",
    "GraphQL errors returned to clients, by contract error code.",
    ["code"],
)
PLEDGES_CREATED = Counter(
    "careforall_pledges_created_total", "Pledges created (idempotent replays excluded)."
)
PLEDGE_TRANSITIONS = Counter(
    "careforall_pledge_transitions_total",
    "Pledge state changes applied, by from and to state.",
    ["from_status", "to_status"],
)
WEBHOOKS = Counter(
    "careforall_webhooks_received_total",
    "Payment webhooks received, by outcome.",
    ["outcome"],
)
OUTBOX_DELIVERED = Counter(
    "careforall_outbox_events_delivered_total",
    "Outbox events whose handlers all succeeded.",
)
OUTBOX_RETRIES = Counter(
    "careforall_outbox_retries_total",
    "Outbox event deliveries that failed and will be retried.",
)
OUTBOX_DEAD_LETTERS = Counter(
    "careforall_outbox_dead_letters_total", "Outbox events parked as dead letters."
)
OUTBOX_PENDING = Gauge(
    "careforall_outbox_pending_events", "Outbox events waiting to be delivered."
)
SUBSCRIPTIONS_OPEN = Gauge(
    "careforall_subscriptions_open", "Open GraphQL subscriptions on this process."
)


def count_events(events: Sequence[Event]) -> None:
    """Count what a commit made happen (called once the commit succeeded)."""
    for event in events:
        if isinstance(event, PledgeCreated):
            PLEDGES_CREATED.inc()
        elif isinstance(event, PledgeStatusChanged):
            PLEDGE_TRANSITIONS.labels(event.from_status, event.to_status).inc()


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""Prometheus collectors (created once per process) and the `/metrics` endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.metrics import MetricWrapperBase

from careforall.domain.events import Event, PledgeCreated, PledgeStatusChanged
from careforall.domain.states import PledgeStatus

# No `*_created` series beside each counter and histogram: the text format
# makes them separate gauges that only double what a scrape has to read.
disable_created_metrics()  # type: ignore[no-untyped-call]

# The first names seen become label values; any later one counts as "other".
OPERATION_NAME_LIMIT = 50
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

HTTP_REQUESTS = Counter(
    "careforall_http_requests_total",
    "HTTP requests answered, by route and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "careforall_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
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
WEBHOOK_SIGNATURE_FAILURES = Counter(
    "careforall_webhook_signature_failures_total",
    "Payment webhooks refused for their signature, by reason (missing, "
    "malformed, stale, mismatch); each is counted, only samples are logged.",
    ["reason"],
)
OUTBOX_DELIVERED = Counter(
    "careforall_outbox_events_delivered_total",
    "Outbox events whose handlers all succeeded.",
)
OUTBOX_RETRIES = Counter(
    "careforall_outbox_retries_total",
    "Outbox event deliveries that failed and will be retried.",
)
OUTBOX_BATCH_FALLBACKS = Counter(
    "careforall_outbox_batch_fallbacks_total",
    "Outbox batches whose handler failed, delivered again one event at a time.",
)
OUTBOX_DEAD_LETTERS = Counter(
    "careforall_outbox_dead_letters_total", "Outbox events parked as dead letters."
)
DB_CONFLICT_RETRIES = Counter(
    "careforall_db_conflict_retries_total",
    "Writes run again after PostgreSQL reported a deadlock or serialization failure.",
)
OUTBOX_PENDING = Gauge(
    "careforall_outbox_pending_events", "Outbox events waiting to be delivered."
)
SUBSCRIPTIONS_OPEN = Gauge(
    "careforall_subscriptions_open", "Open GraphQL subscriptions on this process."
)
GRAPHQL_OPERATIONS = Counter(
    "careforall_graphql_operations_total",
    "GraphQL operations executed, by operation name (the first "
    f"{OPERATION_NAME_LIMIT} names seen; later ones count as other), type and "
    "outcome (ok or error).",
    ["operation", "operation_type", "outcome"],
)
GRAPHQL_LATENCY = Histogram(
    "careforall_graphql_operation_duration_seconds",
    "Time to execute a GraphQL query or mutation, by operation name and type.",
    ["operation", "operation_type"],
    buckets=LATENCY_BUCKETS,
)
GRAPHQL_RESPONSE_CACHE = Counter(
    "careforall_graphql_response_cache_total",
    "Public queries answered from the response cache (hit) or executed (miss).",
    ["result"],
)
CAPTURED_CENTS = Counter(
    "careforall_payments_captured_cents_total",
    "Money captured, in minor units (cents) of its currency.",
    ["currency"],
)
REFUNDED_CENTS = Counter(
    "careforall_payments_refunded_cents_total",
    "Money refunded, in minor units (cents) of its currency.",
    ["currency"],
)
PROVIDER_CALLS = Counter(
    "careforall_provider_calls_total",
    "Calls to the payment provider's API (Stripe), by call and outcome: ok, "
    "refused (4xx), error (5xx) or unanswered (a timeout or no connection).",
    ["call", "outcome"],
)
PAYMENTS_DECLINED = Counter(
    "careforall_payments_declined_total",
    "Payments the provider declined or failed (pledges that became FAILED).",
)
OUTBOX_DEAD = Gauge(
    "careforall_outbox_dead_events",
    "Outbox events parked as dead letters now (until replayed).",
)
OUTBOX_LAG = Gauge(
    "careforall_outbox_oldest_pending_age_seconds",
    "Age of the oldest outbox event still waiting to be delivered (0 when none).",
)
OUTBOX_DISPATCH_LATENCY = Histogram(
    "careforall_outbox_dispatch_latency_seconds",
    "Time from an outbox event's commit to its successful delivery.",
    buckets=LAG_BUCKETS,
)
TOTALS_LAG = Histogram(
    "careforall_totals_update_lag_seconds",
    "Time from a pledge state change's commit to the totals that reflect it.",
    buckets=LAG_BUCKETS,
)
READY = Gauge(
    "careforall_ready",
    "1 when this process is ready to serve (database reachable and taking writes, "
    "background tasks running), else 0.",
)
RETENTION_PRUNED = Counter(
    "careforall_retention_pruned_rows_total",
    "Rows deleted by retention (delivered outbox events, webhook log, delivered "
    "simulated-provider webhooks, sent mails other than receipts), by table.",
    ["table"],
)
RETENTION_TABLES = ("outbox_events", "webhook_log", "sim_webhooks", "mails")
for _table in RETENTION_TABLES:
    RETENTION_PRUNED.labels(_table)

# Known label values start at zero, so rate() and increase() see the first event.
MAILS_WRITTEN = Counter(
    "careforall_mails_written_total",
    "Mails written to send (or kept without SMTP), by kind.",
    ["kind"],
)
MAILS_SENT = Counter(
    "careforall_mails_sent_total", "Mails the SMTP server took, by kind.", ["kind"]
)
MAILS_FAILED = Counter(
    "careforall_mails_failed_total",
    "Tries to send a mail that failed and will be tried again, by kind.",
    ["kind"],
)
MAILS_DEAD = Counter(
    "careforall_mails_dead_total",
    "Mails the SMTP server refused for good (dead, for an admin to replay), by kind.",
    ["kind"],
)
MAILS_WAITING = Gauge(
    "careforall_mails_waiting",
    "Mails not sent: queued (to send), kept (no SMTP configured) and dead.",
    ["status"],
)
MAIL_KINDS = ("receipt", "refund", "declined", "digest", "goal_reached", "alert")
for _kind in MAIL_KINDS:
    for _counter in (MAILS_WRITTEN, MAILS_SENT, MAILS_FAILED, MAILS_DEAD):
        _counter.labels(_kind)
for _status in ("queued", "kept", "dead"):
    MAILS_WAITING.labels(_status)

WEBHOOK_OUTCOMES = (
    "processed",
    "duplicate",
    "ignored",
    "rejected_signature",
    "rejected_malformed",
    "rejected_unprocessable",
    "rejected_too_large",
)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOKS.labels(_outcome)
# As payments/signature.py's SIGNATURE_FAILURES (the base layer imports no
# payments module).
for _reason in ("missing", "malformed", "stale", "mismatch"):
    WEBHOOK_SIGNATURE_FAILURES.labels(_reason)


M = TypeVar("M", bound=MetricWrapperBase)

# The series every request counts in, by collector and label values. Their
# values are bounded (routes, methods, status codes, known operation names),
# as the collectors' own children are, which live as long.
_CHILDREN: dict[tuple[object, ...], MetricWrapperBase] = {}


def labelled(metric: M, *values: str) -> M:
    """`metric.labels(*values)`, kept: `labels` checks the values and takes a
    lock on every call (about 2 us, four times a request)."""
    key = (metric, *values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child  # type: ignore[return-value]


def count_events(events: Sequence[Event]) -> None:
    """Count what a commit made happen (called once the commit succeeded)."""
    for event in events:
        if isinstance(event, PledgeCreated):
            PLEDGES_CREATED.inc()
        elif isinstance(event, PledgeStatusChanged):
            PLEDGE_TRANSITIONS.labels(event.from_status, event.to_status).inc()
            if event.to_status == PledgeStatus.CAPTURED:
                CAPTURED_CENTS.labels(event.currency).inc(event.amount_cents)
            elif event.to_status == PledgeStatus.REFUNDED:
                REFUNDED_CENTS.labels(event.currency).inc(event.amount_cents)
            elif event.to_status == PledgeStatus.FAILED:
                PAYMENTS_DECLINED.inc()

"""Traces: one donation is one trace, from createPledge to the totals update."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from sqlmodel import select
from starlette.testclient import TestClient

from careforall import tracing
from careforall.db import Database
from careforall.models import OutboxEvent, SimWebhook
from careforall.settings import Settings, SettingsError
from tests import factories as f
from tests.endpoints.conftest import JsonLogs, Spans
from tests.helpers.api import GQL
from tests.helpers.fresh_process import loaded, modules_after_a_request
from tests.helpers.waiting import wait_until

CREATE = """
mutation CreatePledge($input: PledgeInput!) {
  createPledge(input: $input) { id status amountCents }
}"""
EXPECTED = {
    "POST /graphql",
    "mutation CreatePledge",
    "service create_pledge",
    "mutation AuthorizePayment",
    "service authorize_payment",
    "outbox PledgeStatusChanged",
    "handler capture_after_authorization",
    "handler update_totals",
    "subscription push",
    "provider webhook payment.authorized",
    "provider webhook payment.captured",
    "POST /webhooks/payments",
    "service apply_provider_event",
}
AUTHORIZE = """
mutation AuthorizePayment($id: ID!, $pm: String!) {
  authorizePayment(pledgeId: $id, paymentMethod: $pm) { id status }
}"""


def hex_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return trace.format_trace_id(span.context.trace_id)


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    matches = [
        s for s in spans if s.context and s.context.span_id == span.parent.span_id
    ]
    return matches[0] if matches else None


def post(
    client: TestClient, query: str, variables: dict[str, Any], headers: dict[str, str]
) -> tuple[dict[str, Any], str]:
    """The response's data and its X-Request-ID."""
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"], response.headers["x-request-id"]


def test_one_donation_is_one_trace_from_create_pledge_to_the_totals_update(
    spans: Spans, json_logs: JsonLogs, client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    # The client starts the donation's trace and sends it with both calls (W3C).
    trace_id = secrets.token_hex(16)

    def headers() -> dict[str, str]:
        return {
            "Authorization": f"Bearer {donor}",
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        }

    data, create_request = post(
        client,
        CREATE,
        {
            "input": {
                "campaignId": campaign["id"],
                "amountCents": 4200,
                "idempotencyKey": f.unique("key"),
            }
        },
        headers(),
    )
    pledge_id = data["createPledge"]["id"]
    _, authorize_request = post(
        client, AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, headers()
    )
    wait_until(lambda: f.totals(gql, campaign["id"]) == (4200, 1))

    def donation() -> list[ReadableSpan]:
        return [s for s in spans.all() if hex_id(s) == trace_id]

    def complete() -> bool:
        # Every step is there, and every parent has ended too (a parent ends
        # after its children); the requests' parents are the client's own.
        found = donation()
        return EXPECTED <= {s.name for s in found} and all(
            parent_of(s, found) is not None for s in found if s.name != "POST /graphql"
        )

    # The provider's webhooks arrive after the totals; the trace ends with them.
    wait_until(complete)
    donation_spans = donation()
    # The parts of the app's work for this donation are all in its trace.
    for name in ("handler update_totals", "subscription push"):
        assert all(hex_id(s) == trace_id for s in spans.named(name)), name
    # PledgeCreated is record-only: written delivered, never dispatched.
    assert "outbox PledgeCreated" not in {s.name for s in donation_spans}

    # Parent links: each step is a child of the one that caused it.
    def parent_name(name: str) -> set[str | None]:
        return {
            (p.name if (p := parent_of(s, donation_spans)) else None)
            for s in donation_spans
            if s.name == name
        }

    assert parent_name("mutation CreatePledge") == {"POST /graphql"}
    assert parent_name("service create_pledge") == {"mutation CreatePledge"}
    assert parent_name("handler update_totals") == {"outbox PledgeStatusChanged"}
    assert parent_name("subscription push") == {"outbox PledgeStatusChanged"}
    assert parent_name("POST /webhooks/payments") == {
        "provider webhook payment.authorized",
        "provider webhook payment.captured",
    }
    # The CAPTURED event was written by the capture in the handler (or by the
    # provider's webhook, had it come first); its delivery continues that span.
    assert parent_name("outbox PledgeStatusChanged") <= {
        "service authorize_payment",
        "handler capture_after_authorization",
        "service apply_provider_event",
    }
    kinds = {s.name: s.kind for s in donation_spans}
    assert kinds["POST /graphql"] == SpanKind.SERVER
    assert kinds["provider webhook payment.captured"] == SpanKind.CLIENT
    assert kinds["outbox PledgeStatusChanged"] == SpanKind.CONSUMER

    # The trace id is on those requests' log lines, and on the state changes.
    for request_id in (create_request, authorize_request):
        (line,) = json_logs.where(message="request", request_id=request_id)
        assert line["trace_id"] == trace_id
    changes = json_logs.where(message="pledge status changed", pledge_id=pledge_id)
    assert {c["to_status"] for c in changes} == {"AUTHORIZED", "CAPTURED"}
    assert {c.get("trace_id") for c in changes} == {trace_id}, changes


def test_a_request_without_traceparent_starts_the_trace_its_effects_continue(
    spans: Spans, json_logs: JsonLogs, client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"], amount=1500)
    _, request_id = post(
        client,
        AUTHORIZE,
        {"id": pledge["id"], "pm": "pm_card_ok"},
        {"Authorization": f"Bearer {donor}"},
    )
    wait_until(lambda: f.totals(gql, campaign["id"]) == (1500, 1))
    wait_until(lambda: spans.named("subscription push"))
    (line,) = json_logs.where(message="request", request_id=request_id)
    trace_id = line["trace_id"]
    (root,) = [
        s for s in spans.named("mutation AuthorizePayment") if hex_id(s) == trace_id
    ]
    assert root is not None
    updates = [s for s in spans.named("handler update_totals") if hex_id(s) == trace_id]
    assert updates, "the totals update continues the authorizing request's trace"


def test_the_outbox_row_and_the_owed_webhook_keep_the_trace_context(
    spans: Spans, client: TestClient, gql: GQL, db: Database
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    (service,) = spans.named("service authorize_payment")
    trace_id = hex_id(service)
    with db.read() as session:
        events = session.exec(
            select(OutboxEvent).where(OutboxEvent.name == "PledgeStatusChanged")
        ).all()
        webhooks = session.exec(select(SimWebhook)).all()
    assert events and webhooks
    for row in [*events, *webhooks]:
        assert row.trace_context is not None
        version, row_trace, span_id, flags = row.trace_context.split("-")
        assert (version, row_trace) == ("00", trace_id)
        assert len(span_id) == 16
        assert int(flags, 16) & 1  # sampled


def test_tracing_is_off_by_default_and_stores_no_context(
    client: TestClient, gql: GQL, db: Database
) -> None:
    assert not tracing.enabled()
    assert not type(trace.get_tracer_provider()).__module__.startswith(
        "opentelemetry.sdk"
    )
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    with db.read() as session:
        contexts = [row.trace_context for row in session.exec(select(OutboxEvent))]
        contexts += [row.trace_context for row in session.exec(select(SimWebhook))]
    assert contexts and set(contexts) == {None}


def test_with_tracing_off_the_sdk_is_never_loaded(db_url: str) -> None:
    """A whole request in a fresh process leaves the OpenTelemetry SDK unimported."""
    assert loaded(modules_after_a_request(db_url), "opentelemetry.sdk") == []


def test_the_console_exporter_prints_one_json_span_per_line(
    app_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = app_factory(traces_exporter="console")
    gql = GQL(client)
    assert tracing.enabled()
    f.anonymous(gql)
    out = capsys.readouterr().out
    printed = [json.loads(line) for line in out.splitlines() if '"trace_id"' in line]
    names = {span["name"] for span in printed}
    assert {"POST /graphql", "mutation", "service start_anonymous_session"} <= names
    assert all(span["resource"]["attributes"]["service.name"] for span in printed)


def test_otel_traces_exporter_picks_the_exporter() -> None:
    assert Settings.from_env({}).traces_exporter == "none"
    env = {"OTEL_TRACES_EXPORTER": "OTLP, console"}
    assert Settings.from_env(env).traces_exporter == "otlp,console"
    off = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}
    assert Settings.from_env(off).traces_exporter == "none"
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER"):
        Settings.from_env({"OTEL_TRACES_EXPORTER": "jaeger"})
    assert tracing.build_provider("none") is None
    provider = tracing.build_provider("otlp")
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "careforall"
    provider.shutdown()


def test_a_bad_traceparent_header_starts_a_fresh_trace(
    spans: Spans, client: TestClient
) -> None:
    response = client.post(
        "/graphql",
        json={"query": "query Probe { __typename }"},
        headers={"traceparent": "00-not-a-trace-01"},
    )
    assert response.status_code == 200
    (operation,) = spans.named("query Probe")
    assert operation.parent is not None  # the request's own span
    (request,) = spans.named("POST /graphql")
    assert request.parent is None
    assert hex_id(request) == hex_id(operation)

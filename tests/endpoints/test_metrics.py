"""GET /metrics: each metric moves as the actions it counts happen, and the
exposition passes `promtool check metrics`."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import func, select
from starlette.testclient import TestClient

from careforall.api import observability
from careforall.api.observability import OperationNames
from careforall.app import create_app
from careforall.db import Database
from careforall.domain.events import Event, PledgeStatusChanged
from careforall.metrics import WEBHOOK_OUTCOMES
from careforall.middleware.requests import route_label
from careforall.models import SimWebhook
from careforall.outbox import handlers
from careforall.outbox.handlers import HandlerContext
from careforall.services.webhook_log import WebhookOutcome
from careforall.settings import Settings
from tests import factories as f
from tests.endpoints.conftest import JsonLogs
from tests.helpers.api import GQL
from tests.helpers.outbox import outbox_drained
from tests.helpers.server import free_port
from tests.helpers.waiting import wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def metric(client: TestClient, name: str, **labels: str) -> float:
    return scrape(client).get((name, frozenset(labels.items())), 0.0)


class Watch:
    """Values of some series before an action, to compare with after it."""

    def __init__(self, client: TestClient, *series: tuple[str, dict[str, str]]):
        self.client = client
        self.series = series
        self.before = self.now()

    def now(self) -> list[float]:
        samples = scrape(self.client)
        return [
            samples.get((name, frozenset(labels.items())), 0.0)
            for name, labels in self.series
        ]

    def deltas(self) -> list[float]:
        return [
            after - before
            for after, before in zip(self.now(), self.before, strict=True)
        ]


def s(name: str, **labels: str) -> tuple[str, dict[str, str]]:
    return name, labels


# --- conventions -------------------------------------------------------------


def _exercise(client: TestClient, gql: GQL) -> None:
    """A donation, a refund, a decline, errors and webhooks: every label in use."""
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    wait_until(lambda: f.totals(gql, campaign["id"]) == (pledge["amountCents"], 1))
    gql.ok(f.REFUND, {"id": pledge["id"]}, f.admin(gql).token)
    declined = f.pledge(gql, donor, campaign["id"])
    gql.ok(f.AUTHORIZE, {"id": declined["id"], "pm": "pm_card_declined"}, donor)
    gql.code(f.PLEDGE, {"id": pledge["id"]})
    f.post_webhook(client, b"{}", signed=False)
    client.post("/graphql", json={"query": "{ nope"})


def test_promtool_check_metrics_reports_nothing(
    promtool: str, client: TestClient, gql: GQL
) -> None:
    _exercise(client, gql)
    text = client.get("/metrics").text
    assert "careforall_payments_refunded_cents_total" in text
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_every_metric_has_help_and_a_conventional_name(
    client: TestClient, gql: GQL
) -> None:
    _exercise(client, gql)
    families = [
        family
        for family in text_string_to_metric_families(client.get("/metrics").text)
        if family.name.startswith("careforall_")
    ]
    assert len(families) >= 20
    for family in families:
        assert family.documentation.strip(), family.name
        names = {sample.name for sample in family.samples}
        if family.type == "counter":
            assert all(n.endswith("_total") for n in names), names
        elif family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        else:
            assert family.type == "gauge", family.name
            assert not family.name.endswith("_total"), family.name
        assert "_created" not in {n[len(family.name) :] for n in names}


# --- HTTP and GraphQL --------------------------------------------------------


def test_route_labels_are_bounded() -> None:
    assert route_label("/admin/export/donations.csv") == "/admin/export/donations.csv"
    assert route_label("/graphql") == "/graphql"
    assert route_label("/app.js") == "static"
    assert route_label("/campaigns/cmp_123") == "other"


def test_http_latency_is_observed_by_route(client: TestClient) -> None:
    watch = Watch(
        client,
        s(
            "careforall_http_request_duration_seconds_count",
            route="/graphql",
            method="POST",
        ),
        s(
            "careforall_http_requests_total",
            route="/graphql",
            method="POST",
            status="200",
        ),
    )
    client.post("/graphql", json={"query": "{ __typename }"})
    client.post("/graphql", json={"query": "{ __typename }"})
    assert watch.deltas() == [2, 2]


def test_graphql_operations_are_counted_and_timed_by_name(
    client: TestClient, gql: GQL
) -> None:
    watch = Watch(
        client,
        s(
            "careforall_graphql_operations_total",
            operation="CampaignList",
            operation_type="query",
            outcome="ok",
        ),
        s(
            "careforall_graphql_operation_duration_seconds_count",
            operation="CampaignList",
            operation_type="query",
        ),
        s(
            "careforall_graphql_operations_total",
            operation="anonymous",
            operation_type="query",
            outcome="ok",
        ),
        s(
            "careforall_graphql_operations_total",
            operation="MyPledge",
            operation_type="query",
            outcome="error",
        ),
    )
    for _ in range(3):
        gql.ok("query CampaignList { campaigns(first: 1) { edges { cursor } } }")
    gql.ok("{ __typename }")
    gql.code('query MyPledge { pledge(id: "plg_x") { id } }')
    assert watch.deltas() == [3, 3, 1, 1]


def test_operation_names_are_bounded() -> None:
    names = OperationNames(limit=2)
    assert names.label("First", valid=True) == "First"
    assert names.label(None, valid=True) == "anonymous"
    assert names.label("Second", valid=False) == "other"  # never seen valid
    assert names.label("Second", valid=True) == "Second"
    assert names.label("Third", valid=True) == "other"  # no slot left
    assert names.label("First", valid=False) == "First"  # known names stay
    assert OperationNames(limit=5).label("x" * 65, valid=True) == "other"
    assert OperationNames(limit=5).label('bad"name', valid=True) == "other"


def test_operation_names_past_the_limit_fold_into_other(
    client: TestClient, gql: GQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(observability, "OPERATION_NAMES", OperationNames(limit=1))

    def count(name: str) -> float:
        return metric(
            client,
            "careforall_graphql_operations_total",
            operation=name,
            operation_type="query",
            outcome="ok",
        )

    other = count("other")
    gql.ok("query KeptName { __typename }")
    gql.ok("query FoldedName { __typename }")
    gql.ok("query AlsoFolded { __typename }")
    assert count("KeptName") >= 1
    assert count("FoldedName") == count("AlsoFolded") == 0
    assert count("other") == other + 2


def test_errors_are_counted_by_contract_code(client: TestClient, gql: GQL) -> None:
    watch = Watch(
        client,
        s("careforall_graphql_errors_total", code="UNAUTHENTICATED"),
        s("careforall_graphql_errors_total", code="GRAPHQL_PARSE_FAILED"),
    )
    assert gql.code(f.PLEDGE, {"id": "plg_missing"}) == "UNAUTHENTICATED"
    assert gql.code("{ campaigns(") == "GRAPHQL_PARSE_FAILED"
    assert watch.deltas() == [1, 1]


# --- money -------------------------------------------------------------------


def test_money_flow_counts_each_committed_step_once(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    watch = Watch(
        client,
        s("careforall_pledges_created_total"),
        s(
            "careforall_pledge_transitions_total",
            from_status="PENDING",
            to_status="AUTHORIZED",
        ),
        s(
            "careforall_pledge_transitions_total",
            from_status="AUTHORIZED",
            to_status="CAPTURED",
        ),
        s(
            "careforall_pledge_transitions_total",
            from_status="CAPTURED",
            to_status="REFUNDED",
        ),
        s("careforall_payments_captured_cents_total", currency="USD"),
        s("careforall_payments_refunded_cents_total", currency="USD"),
        s("careforall_payments_declined_total"),
        s(
            "careforall_pledge_transitions_total",
            from_status="PENDING",
            to_status="FAILED",
        ),
    )
    kept = f.pledge(gql, donor, campaign["id"], amount=1234)
    refunded = f.pledge(gql, donor, campaign["id"], amount=5000)
    declined = f.pledge(gql, donor, campaign["id"], amount=777)
    for pledge in (kept, refunded):
        gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    gql.ok(f.AUTHORIZE, {"id": declined["id"], "pm": "pm_card_declined"}, donor)
    wait_until(lambda: f.totals(gql, campaign["id"]) == (6234, 2))
    gql.ok(f.REFUND, {"id": refunded["id"]}, f.admin(gql).token)
    wait_until(lambda: f.totals(gql, campaign["id"]) == (1234, 1))
    # The provider's own webhooks for the same steps arrive too and change nothing.
    wait_until(lambda: _webhooks_delivered(client))
    assert watch.deltas() == [3, 2, 2, 1, 6234, 5000, 1, 1]


def _webhooks_delivered(client: TestClient) -> bool:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.read() as session:
        owed = session.exec(
            select(func.count()).where(SimWebhook.delivered_at == None)  # noqa: E711
        ).one()
    return bool(owed == 0)


# --- webhooks ----------------------------------------------------------------


def test_webhooks_are_counted_by_outcome(client: TestClient, gql: GQL) -> None:
    # The label values are the webhook log's outcomes, a fixed set.
    assert set(WEBHOOK_OUTCOMES) == {outcome.value for outcome in WebhookOutcome}
    present = scrape(client)
    for outcome in WEBHOOK_OUTCOMES:  # every outcome is a series from the start
        key = ("careforall_webhooks_received_total", frozenset({("outcome", outcome)}))
        assert key in present, outcome
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    pledge = f.pledge(gql, f.anonymous(gql), campaign["id"])
    watch = Watch(
        client,
        *(s("careforall_webhooks_received_total", outcome=o) for o in WEBHOOK_OUTCOMES),
    )
    event = f.provider_event(pledge, "authorized")
    f.post_webhook(client, event)
    f.post_webhook(client, event)
    f.post_webhook(client, event, signed=False)
    f.post_webhook(client, b"[1]")
    f.post_webhook(client, f.provider_event(pledge, "captured", amount=1))
    f.post_webhook(client, f.provider_event(pledge, "disputed"))
    expected = {
        "processed": 1,
        "duplicate": 1,
        "rejected_signature": 1,
        "rejected_malformed": 1,
        "rejected_unprocessable": 1,
        "ignored": 1,
        "rejected_too_large": 0,
    }
    assert dict(zip(WEBHOOK_OUTCOMES, watch.deltas(), strict=True)) == expected


# --- outbox ------------------------------------------------------------------


def _always_failing(ctx: HandlerContext, event: Event) -> None:
    raise RuntimeError("the handler is down")


def test_outbox_lag_retries_and_dead_letters(
    app_factory: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    json_logs: JsonLogs,
) -> None:
    monkeypatch.setitem(
        handlers.SIDE_EFFECT_HANDLERS, PledgeStatusChanged, [_always_failing]
    )
    client = app_factory(outbox_max_attempts=3, outbox_base_delay=0.3)
    gql = GQL(client)
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])
    watch = Watch(
        client,
        s("careforall_outbox_retries_total"),
        s("careforall_outbox_dead_letters_total"),
    )
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)

    # While the AUTHORIZED event waits for its retry, it is pending and ageing.
    def lagging() -> bool:
        samples = scrape(client)
        pending = samples[("careforall_outbox_pending_events", frozenset())]
        lag = samples[("careforall_outbox_oldest_pending_age_seconds", frozenset())]
        return pending >= 1 and lag > 0

    wait_until(lagging, timeout=3)
    wait_until(lambda: metric(client, "careforall_outbox_dead_events") == 1, timeout=5)
    retries, dead = watch.deltas()
    assert (retries, dead) == (2, 1)
    wait_until(
        lambda: (
            metric(client, "careforall_outbox_pending_events") == 0
            and metric(client, "careforall_outbox_oldest_pending_age_seconds") == 0
        )
    )
    (line,) = json_logs.where(message="outbox event parked as a dead letter")
    assert line["level"] == "error"
    assert line["event"] == "PledgeStatusChanged"
    assert line["attempts"] == 3
    assert "the handler is down" in line["error"]


def test_dispatch_latency_and_totals_lag_are_observed(
    client: TestClient, gql: GQL, db: Database
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])
    # The pledge's own event delivered before watching: read from the table,
    # as the pending gauge may still say 0 from before the event was written.
    wait_until(lambda: outbox_drained(db))
    watch = Watch(
        client,
        s("careforall_outbox_dispatch_latency_seconds_count"),
        s("careforall_totals_update_lag_seconds_count"),
        s("careforall_outbox_events_delivered_total"),
    )
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    wait_until(lambda: f.totals(gql, campaign["id"]) == (pledge["amountCents"], 1))
    # AUTHORIZED and CAPTURED: two deliveries, each through the totals handler.
    wait_until(lambda: watch.deltas() == [2, 2, 2])
    slowest = metric(
        client, "careforall_outbox_dispatch_latency_seconds_bucket", le="+Inf"
    ) - metric(client, "careforall_outbox_dispatch_latency_seconds_bucket", le="5.0")
    assert slowest == 0  # delivered within seconds, not minutes


# --- subscriptions and readiness ----------------------------------------------


def test_open_subscriptions_are_counted(client: TestClient, gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    before = metric(client, "careforall_subscriptions_open")
    query = "subscription($id: ID!) { campaignTotals(campaignId: $id) { raisedCents } }"
    with client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"]
    ) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": query, "variables": {"id": campaign["id"]}},
            }
        )
        first: dict[str, Any] = ws.receive_json()
        assert first["type"] == "next"
        assert metric(client, "careforall_subscriptions_open") == before + 1
        ws.send_json({"id": "1", "type": "complete"})
        wait_until(lambda: metric(client, "careforall_subscriptions_open") == before)


def test_ready_gauge_follows_readiness(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    wait_until(lambda: metric(client, "careforall_ready") == 1)
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    monkeypatch.setattr(runtime.db, "ping", lambda: False)
    assert metric(client, "careforall_ready") == 0
    monkeypatch.undo()
    assert metric(client, "careforall_ready") == 1


# --- who may scrape ------------------------------------------------------------


def test_a_metrics_token_is_required_when_one_is_set(
    app_factory: Callable[..., TestClient],
) -> None:
    token = "scrape-token-" + "t" * 20
    client = app_factory(metrics_token=token)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert "careforall_" not in refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")
    answered = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answered.status_code == 200
    assert "careforall_ready" in answered.text


def test_metrics_can_be_served_on_a_port_of_their_own(settings: Settings) -> None:
    port = free_port()
    with TestClient(create_app(settings.with_(metrics_port=port))) as client:
        assert client.get("/metrics").status_code == 404  # not on the public port
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as scraper:
            answer = scraper.get("/metrics")
            assert answer.status_code == 200
            assert "careforall_ready 1.0" in answer.text
            assert scraper.get("/graphql").status_code == 404  # /metrics alone
    # Stopped with the app.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_a_metrics_port_in_use_stops_the_start_with_the_setting_named(
    app_factory: Callable[..., TestClient],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="CAREFORALL_METRICS_PORT"):
            app_factory(metrics_port=taken.getsockname()[1])


def test_a_kept_series_is_the_collectors_own() -> None:
    from careforall import metrics

    child = metrics.labelled(metrics.HTTP_REQUESTS, "/kept", "POST", "200")
    assert child is metrics.HTTP_REQUESTS.labels("/kept", "POST", "200")
    assert metrics.labelled(metrics.HTTP_REQUESTS, "/kept", "POST", "200") is child
    assert metrics.labelled(metrics.HTTP_REQUESTS, "/kept", "POST", "500") is not child
    before = child._value.get()
    metrics.labelled(metrics.HTTP_REQUESTS, "/kept", "POST", "200").inc()
    assert child._value.get() == before + 1

"""Operators' endpoints: liveness, readiness, Prometheus metrics, and the web app."""

from __future__ import annotations

import os
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from careforall import __version__
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics, keyed by name and sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def pledges_created(client: TestClient) -> float:
    return samples(client).get(("careforall_pledges_created_total", ()), 0.0)


def test_healthz_is_ok_with_the_version_and_the_process(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    # The process id tells which of `serve --workers N`'s processes answered.
    assert response.json() == {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
    }


def test_readyz_is_ready_when_running(client: TestClient) -> None:
    # The background workers start with the app; give them their first tick.
    response = wait_until(lambda: (r := client.get("/readyz")).status_code == 200 and r)
    assert response.json() == {
        "ready": True,
        "checks": {"database": True, "outbox": True, "webhook_sender": True},
    }


def test_readyz_is_503_when_the_database_is_unreachable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    wait_until(lambda: client.get("/readyz").status_code == 200)
    monkeypatch.setattr(client.app.state.runtime.db, "ping", lambda: False)  # type: ignore[attr-defined]
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert response.json()["checks"]["database"] is False
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_metrics_count_http_requests_by_route(client: TestClient) -> None:
    key = (
        "careforall_http_requests_total",
        (("method", "GET"), ("route", "/healthz"), ("status", "200")),
    )
    before = samples(client).get(key, 0.0)
    for _ in range(3):
        client.get("/healthz")
    assert samples(client)[key] == before + 3
    # Unknown paths share one label instead of one series each.
    client.get("/no/such/page-12345")
    names = {
        labels
        for name, labels in samples(client)
        if name == "careforall_http_requests_total"
    }
    assert not any(("route", "/no/such/page-12345") in labels for labels in names)


def test_metrics_count_each_new_pledge_once(client: TestClient, gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    before = pledges_created(client)
    pledge = f.pledge(gql, donor, campaign["id"], idempotencyKey="same-key")
    assert pledges_created(client) == before + 1
    replay = f.pledge(gql, donor, campaign["id"], idempotencyKey="same-key")
    assert replay["id"] == pledge["id"]
    assert pledges_created(client) == before + 1
    gql.code(
        f.CREATE_PLEDGE,
        {
            "input": {
                "campaignId": "cmp_missing",
                "amountCents": 1,
                "idempotencyKey": "k",
            }
        },
        donor,
    )
    assert pledges_created(client) == before + 1


def test_metrics_names_the_documented_families(client: TestClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").text
    for name in ("careforall_http_requests", "careforall_pledges_created"):
        assert re.search(rf"^# TYPE {name}(_total)? counter$", text, re.MULTILINE), name
        assert re.search(rf"^{name}_total(\{{.*\}})? \d", text, re.MULTILINE), name


def test_root_serves_the_web_app(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()

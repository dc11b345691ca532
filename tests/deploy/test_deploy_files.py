"""deploy/: the Prometheus config and alert rules pass promtool (and their rule
unit tests), the dashboard's queries are valid PromQL over metrics the app
exports, and the compose file wires the three services together."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "careforall.json"
METRIC = re.compile(r"\b(careforall_[a-z0-9_]+)")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, check=False, cwd=DEPLOY
    )


def dashboard_exprs() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    rules: dict[str, Any] = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_prometheus_config_and_alert_rules_pass_promtool(promtool: str) -> None:
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        # Each alert fires on the series it is meant for, and stops after.
        ("test", "rules", "alerts_test.yml"),
    ):
        result = run(promtool, *args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    exprs = [e.replace("$__rate_interval", "5m") for e in dashboard_exprs()]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": expr}
                    for i, expr in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


def test_the_alerts_cover_what_operators_must_hear_about() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert exprs["OutboxDeadLetters"] == "careforall_outbox_dead_events > 0"
    assert exprs["OutboxLagHigh"] == "careforall_outbox_oldest_pending_age_seconds > 5"
    assert 'outcome=~"rejected_.*"' in exprs["WebhookRejectsRising"]
    assert exprs["CareForAllNotReady"] == "careforall_ready == 0"
    for rule in alert_rules():
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_the_dashboard_shows_money_lag_dead_letters_errors_and_latency() -> None:
    exprs = "\n".join(dashboard_exprs())
    for needed in (
        "careforall_payments_captured_cents_total",
        "careforall_payments_refunded_cents_total",
        "careforall_outbox_oldest_pending_age_seconds",
        "careforall_outbox_dead_events",
        "careforall_graphql_errors_total",
        "histogram_quantile(0.95",
        "careforall_http_request_duration_seconds_bucket",
        "careforall_graphql_operation_duration_seconds_bucket",
    ):
        assert needed in exprs, needed
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasources = {
        json.dumps(target["datasource"], sort_keys=True)
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert datasources == {'{"type": "prometheus", "uid": "prometheus"}'}


def test_every_metric_the_deploy_files_use_is_exported(
    client: TestClient, gql: GQL
) -> None:
    # Label values appear once used; the family names are there from the start.
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)
    wait_until(lambda: f.totals(gql, campaign["id"]) == (pledge["amountCents"], 1))
    exported = {
        sample.name
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    } | {
        family.name
        for family in text_string_to_metric_families(client.get("/metrics").text)
    }
    used = set(METRIC.findall("\n".join(dashboard_exprs())))
    used |= set(METRIC.findall("\n".join(rule["expr"] for rule in alert_rules())))
    assert len(used) >= 15
    missing = {
        name
        for name in used
        if name not in exported
        and not any(name.endswith(s) and name[: -len(s)] in exported for s in SUFFIXES)
    }
    assert not missing


def test_compose_runs_careforall_with_prometheus_and_grafana() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"careforall", "prometheus", "grafana"}
    app = services["careforall"]
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    assert "EXPOSE 8000" in (ROOT / "Dockerfile").read_text()

    def mounts(service: str) -> dict[str, str]:
        pairs = (v.split(":")[:2] for v in services[service]["volumes"])
        return {target: source for source, target in pairs}

    for service in ("prometheus", "grafana"):
        for source in mounts(service).values():
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), (service, source)
    prometheus = mounts("prometheus")
    assert prometheus["/etc/prometheus/prometheus.yml"] == "./prometheus.yml"
    assert prometheus["/etc/prometheus/alerts.yml"] == "./alerts.yml"
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert grafana["/etc/grafana/dashboards"] == "./grafana/dashboards"

    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["careforall:8000"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert (source["uid"], source["url"]) == ("prometheus", "http://prometheus:9090")
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "careforall.yml").read_text()
    )
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_one_version_everywhere(client: TestClient, gql: GQL) -> None:
    """pyproject.toml's version is what /healthz, the API, the image and the
    changelog say."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "semantic versioning"
    assert client.get("/healthz").json()["version"] == version
    assert gql.ok("{ version }") == {"version": version}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG VERSION={version}\n" in dockerfile
    readme = (ROOT / "README.md").read_text()
    assert f"careforall:{version}" in readme
    assert not set(re.findall(r"careforall:(\d+\.\d+\.\d+)", readme)) - {version}
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{version}]" in changelog

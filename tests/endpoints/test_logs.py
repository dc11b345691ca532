"""Logs: one JSON line per request and per notable event, at a chosen level."""

from __future__ import annotations

import io
import json
import logging

import pytest
from starlette.testclient import TestClient

from careforall import redaction
from careforall.logs import (
    CURRENT_REQUEST,
    RequestLog,
    configure_logging,
    json_handler,
    log_line,
)
from careforall.middleware.requests import RequestMetrics
from careforall.redaction import keep_out
from careforall.settings import Settings, SettingsError
from tests import factories as f
from tests.endpoints.conftest import JsonLogs
from tests.helpers.api import GQL
from tests.helpers.server import ERROR_LINE
from tests.helpers.waiting import wait_until

ME = "query Me { me { id } }"


def request_line(logs: JsonLogs, request_id: str) -> dict[str, object]:
    (line,) = logs.where(message="request", request_id=request_id)
    return line


def test_each_graphql_request_has_one_line_with_what_an_operator_needs(
    json_logs: JsonLogs, client: TestClient, gql: GQL
) -> None:
    user = f.register(gql)
    admin = f.admin(gql)
    anon = f.anonymous(gql)
    cases = {
        None: ("none", None),
        anon: ("anon", None),
        user.token: ("user", user.id),
        admin.token: ("admin", admin.id),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.forged": ("invalid", None),
    }
    for token, (kind, user_id) in cases.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = client.post("/graphql", json={"query": ME}, headers=headers)
        line = request_line(json_logs, response.headers["x-request-id"])
        assert line["principal"] == kind
        assert line.get("user_id") == user_id
        assert line["operation"] == "Me"
        assert line["operation_type"] == "query"
        assert line["status"] == 200
        assert line["method"] == "POST" and line["path"] == "/graphql"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["level"] == "info" and line["logger"] == "careforall.http"
        # Never the token itself, nor an anonymous session's id.
        assert token is None or token not in json.dumps(line)
    refused = request_line(
        json_logs,
        client.post(
            "/graphql", json={"query": 'query { pledge(id: "plg_x") { id } }'}
        ).headers["x-request-id"],
    )
    assert refused["operation"] == "anonymous"
    assert refused["errors"] == ["UNAUTHENTICATED"]


def test_a_sane_request_id_is_kept_and_echoed_and_others_are_replaced(
    json_logs: JsonLogs, client: TestClient
) -> None:
    kept = client.get("/healthz", headers={"X-Request-ID": "edge-42.abc:7"})
    assert kept.headers["x-request-id"] == "edge-42.abc:7"
    for bad in ("has spaces", "x" * 129, 'quote"d', "semi;colon"):
        response = client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"X-Request-ID": bad}
        )
        generated = response.headers["x-request-id"]
        assert generated != bad and len(generated) == 32
        assert request_line(json_logs, generated)["status"] == 200
    fresh = client.get("/healthz").headers["x-request-id"]
    other = client.get("/healthz").headers["x-request-id"]
    assert fresh != other


def test_state_changes_are_logged_with_pledge_states_and_source(
    json_logs: JsonLogs, client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"], amount=3100)
    response = client.post(
        "/graphql",
        json={
            "query": f.AUTHORIZE,
            "variables": {"id": pledge["id"], "pm": "pm_card_ok"},
        },
        headers={"Authorization": f"Bearer {donor}"},
    )

    def changes() -> list[dict[str, object]]:
        return json_logs.where(message="pledge status changed", pledge_id=pledge["id"])

    wait_until(lambda: len(changes()) == 2)
    (created,) = json_logs.where(message="pledge created", pledge_id=pledge["id"])
    assert created["amount_cents"] == 3100
    authorized, captured = changes()
    steps = [(c["from_status"], c["to_status"]) for c in (authorized, captured)]
    assert steps == [("PENDING", "AUTHORIZED"), ("AUTHORIZED", "CAPTURED")]
    assert {authorized["campaign_id"], captured["campaign_id"]} == {campaign["id"]}
    # Each step is applied once, by the API's call or by the provider's webhook,
    # whichever commits first; its line carries that request's id.
    webhook_requests = {
        line["request_id"]
        for line in json_logs.where(message="request", path="/webhooks/payments")
    }
    if authorized["source"] == "api":
        assert authorized["request_id"] == response.headers["x-request-id"]
    else:
        assert str(authorized["source"]).startswith("webhook:evt_")
        assert authorized["request_id"] in webhook_requests
    if captured["source"] == "auto-capture":
        assert "request_id" not in captured  # the dispatcher, not a request
    else:
        assert str(captured["source"]).startswith("webhook:evt_")
        assert captured["request_id"] in webhook_requests


def test_rejected_webhooks_are_logged_with_their_reason(
    json_logs: JsonLogs, client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    pledge = f.pledge(gql, f.anonymous(gql), campaign["id"])
    f.post_webhook(client, f.provider_event(pledge, "authorized"), signed=False)
    f.post_webhook(client, f.provider_event(pledge, "captured", amount=1))
    unsigned, unprocessable = json_logs.where(message="webhook refused")
    assert unsigned["level"] == "warning"
    assert unsigned["outcome"] == "rejected_signature"
    assert unsigned["reason"] == "missing CareForAll-Signature header"
    assert unsigned["status"] == 400
    assert unprocessable["outcome"] == "rejected_unprocessable"
    assert "amount" in str(unprocessable["reason"])


def test_forged_webhooks_are_sampled_into_the_log_not_logged_each(
    json_logs: JsonLogs, client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    pledge = f.pledge(gql, f.anonymous(gql), campaign["id"])
    for _ in range(30):
        f.post_webhook(client, f.provider_event(pledge, "captured"), secret="forged")
    lines = json_logs.where(message="webhook refused")
    # The first, and one when the burst reached the alert's threshold.
    assert [(line["reason"], line["suppressed"]) for line in lines] == [
        ("signature does not match", 0),
        ("signature does not match", 8),
    ]


@pytest.fixture
def restored_root_logger() -> logging.Logger:
    """The root logger, free to change: every test gets its handlers, level
    and lookups back (tests/conftest.py `root_logger_kept`)."""
    return logging.getLogger()


def logged_at(root: logging.Logger, level: str) -> io.StringIO:
    """What the service logs at `level`, as JSON lines, from now on."""
    configure_logging(level)
    stream = io.StringIO()
    root.handlers[:] = [json_handler(stream)]
    return stream


def test_the_level_is_configurable(restored_root_logger: logging.Logger) -> None:
    assert Settings.from_env({"CAREFORALL_LOG_LEVEL": "warning"}).log_level == "WARNING"
    assert Settings.from_env({}).log_level == "INFO"
    with pytest.raises(SettingsError, match="CAREFORALL_LOG_LEVEL"):
        Settings.from_env({"CAREFORALL_LOG_LEVEL": "loud"})
    stream = logged_at(restored_root_logger, "WARNING")
    logger = logging.getLogger("careforall.test")
    logger.info("not written")
    logger.warning("written", extra={"detail": 1})
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["message"] == "written" and line["level"] == "warning"
    assert line["detail"] == 1


def test_errors_keep_their_traceback_and_are_found_by_the_log_scan(
    restored_root_logger: logging.Logger,
) -> None:
    stream = logged_at(restored_root_logger, "INFO")
    logger = logging.getLogger("careforall.test")
    try:
        raise RuntimeError("the disk is full")
    except RuntimeError:
        logger.exception("could not write", extra={"attempt": 2})
    logger.critical("giving up")
    logger.info("still serving", extra={"level_hint": "info"})
    lines = stream.getvalue().splitlines()
    error, critical, info = (json.loads(line) for line in lines)
    assert error["level"] == "error" and error["attempt"] == 2
    assert "RuntimeError: the disk is full" in error["exception"]
    assert "Traceback" in error["exception"]
    assert critical["level"] == "critical" and info["level"] == "info"
    assert [bool(ERROR_LINE.search(line)) for line in lines] == [True, True, False]


def test_log_line_writes_what_logging_would_and_honours_levels(
    restored_root_logger: logging.Logger,
) -> None:
    stream = logged_at(restored_root_logger, "INFO")
    logger = logging.getLogger("careforall.test")
    fields = {"pledge_id": "plg_019a", "amount_cents": 3100, "token": "tok-123456"}
    log_line(logger, logging.INFO, "pledge created", fields)
    logger.info("pledge created", extra=fields)
    log_line(logger, logging.DEBUG, "not written at INFO", fields)
    fast, usual = (json.loads(line) for line in stream.getvalue().splitlines())
    assert fast.pop("time") and usual.pop("time")
    assert fast == usual
    assert fast["token"] == "[REDACTED]" and fast["amount_cents"] == 3100
    # Other handlers get a record as logging makes it.
    records: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(catcher)
    try:
        log_line(logger, logging.WARNING, "slow", {"duration_ms": 1.5})
    finally:
        logger.removeHandler(catcher)
    (record,) = records
    assert record.getMessage() == "slow" and record.levelname == "WARNING"
    assert record.duration_ms == 1.5 and record.name == "careforall.test"  # type: ignore[attr-defined]
    with pytest.raises(KeyError):  # as logging refuses it
        log_line(logger, logging.INFO, "clash", {"message": "mine"})


def test_a_filter_on_the_json_handler_still_applies(
    restored_root_logger: logging.Logger,
) -> None:
    configure_logging("INFO")
    stream = io.StringIO()
    handler = json_handler(stream)
    handler.addFilter(lambda record: record.getMessage() != "dropped")
    restored_root_logger.handlers[:] = [handler]
    logger = logging.getLogger("careforall.test")
    log_line(logger, logging.INFO, "dropped", {})
    log_line(logger, logging.INFO, "kept", {"n": 1})
    (line,) = (json.loads(text) for text in stream.getvalue().splitlines())
    assert line["message"] == "kept" and line["n"] == 1


def _request_lines(entry: RequestLog, path: str, handler: logging.Handler) -> None:
    """The request line of `entry`, once as the server writes it (straight to
    the JSON handler), once through logging (a filter on the handler asks for
    the record)."""
    token = CURRENT_REQUEST.set(entry)
    try:
        RequestMetrics._log(entry, "POST", path, 200, 0.0123456, False)
        handler.addFilter(lambda record: True)
        RequestMetrics._log(entry, "POST", path, 200, 0.0123456, False)
    finally:
        CURRENT_REQUEST.reset(token)


def test_a_request_line_says_the_same_written_directly_or_through_logging(
    restored_root_logger: logging.Logger,
) -> None:
    configure_logging("INFO")
    stream = io.StringIO()
    handler = json_handler(stream)
    restored_root_logger.handlers[:] = [handler]
    entry = RequestLog(
        request_id="0193a7c4e5f6",
        operation="CampaignTotals",
        operation_type="query",
        principal="user",
        user_id="usr_0193a7c4e5f6",
        errors=["NOT_FOUND"],
    )
    _request_lines(entry, "/graphql", handler)
    direct, usual = (json.loads(line) for line in stream.getvalue().splitlines())
    assert direct.pop("time") and usual.pop("time")
    assert (
        direct
        == usual
        == {
            "level": "info",
            "logger": "careforall.http",
            "message": "request",
            "request_id": "0193a7c4e5f6",
            "method": "POST",
            "path": "/graphql",
            "status": 200,
            "duration_ms": 12.35,
            "operation": "CampaignTotals",
            "operation_type": "query",
            "principal": "user",
            "user_id": "usr_0193a7c4e5f6",
            "errors": ["NOT_FOUND"],
        }
    )


@pytest.mark.parametrize(
    "request_id", ["4242424242424242", "4242-4242-4242-4242", "id.4242424242424242"]
)
def test_a_request_line_written_directly_is_redacted_too(
    restored_root_logger: logging.Logger, request_id: str
) -> None:
    configure_logging("INFO")
    stream = io.StringIO()
    handler = json_handler(stream)
    restored_root_logger.handlers[:] = [handler]
    entry = RequestLog(request_id=request_id)
    _request_lines(entry, "/donate/4242424242424242", handler)
    direct, usual = (json.loads(line) for line in stream.getvalue().splitlines())
    assert direct.pop("time") and usual.pop("time")
    assert direct == usual
    assert "4242" not in direct["request_id"]
    assert direct["path"] == "/donate/[REDACTED_CARD]"


def test_a_request_id_holding_a_secret_of_the_server_is_redacted(
    restored_root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redaction, "_SECRETS", type(redaction._SECRETS)(maxlen=32))
    keep_out("Zx81secretvalue")
    configure_logging("INFO")
    stream = io.StringIO()
    handler = json_handler(stream)
    restored_root_logger.handlers[:] = [handler]
    _request_lines(RequestLog(request_id="idZx81secretvalue"), "/graphql", handler)
    assert "Zx81" not in stream.getvalue()
    direct, usual = (json.loads(line) for line in stream.getvalue().splitlines())
    assert direct["request_id"] == usual["request_id"] == "id[REDACTED]"

"""Fixtures for what operators see (the JSON log lines and the spans of the
app) and an app paying through the local Stripe stand-in."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from starlette.testclient import TestClient

from careforall import tracing
from careforall.logs import json_handler
from tests.helpers.api import GQL
from tests.helpers.stripe_standin import (
    PUBLIC_URL,
    StripeStandIn,
)


class JsonLogs:
    """Everything logged while the fixture is active, as production writes it."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line]

    def where(self, **fields: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines()
            if all(line.get(key) == value for key, value in fields.items())
        ]


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    """The production JSON handler on the root logger, at DEBUG."""
    logs = JsonLogs()
    handler = json_handler(logs.stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield logs
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class Spans:
    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.all() if span.name == name]


@pytest.fixture
def spans() -> Iterator[Spans]:
    """Tracing on, into memory, for this test only (request it before `client`)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield Spans(exporter)
    finally:
        tracing.use_provider(None)
        provider.shutdown()


@pytest.fixture
def hosted_gql(
    app_factory: Callable[..., TestClient], stripe_standin: StripeStandIn
) -> GQL:
    """The API of an app on Stripe whose hosted pages lead back to PUBLIC_URL;
    the stand-in holds its webhooks until a test sends them."""
    stripe_standin.webhooks = "held"
    config = stripe_standin.config()
    return GQL(
        app_factory(
            payment_provider="stripe",
            stripe=config,
            auto_capture=False,
            public_url=PUBLIC_URL,
        )
    )

"""Fuzz every query and mutation the running schema exposes with schemathesis.

Whatever the input (valid or not, with or without a token) the answer is never
a 5xx, never carries an internal detail, and every error has a contract code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from graphql import get_introspection_query
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok
from starlette.testclient import TestClient

from careforall.domain.errors import ERROR_CODES
from tests import factories as f
from tests.helpers.api import GQL

# Each operation's share of a run that CI can afford on both databases.
EXAMPLES_PER_OPERATION = 30
CONTRACT_CODES = {*ERROR_CODES, "GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"}
LEAKS = ("Traceback", "sqlalchemy", 'File "')


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    for leak in LEAKS:
        assert leak not in response.text, response.text
    for error in response.json().get("errors") or []:
        assert (error.get("extensions") or {}).get("code") in CONTRACT_CODES, error


def test_fuzzed_operations_never_fail_on_the_server(
    app_factory: Callable[..., TestClient],
) -> None:
    client = app_factory(rate_limits=False)
    gql = GQL(client)
    introspection = gql.ok(get_introspection_query())
    schema = schemathesis.graphql.from_dict({"data": introspection})
    owner = f.register(gql)
    campaign = f.campaign(gql, owner.token)
    donor = f.anonymous(gql)
    f.pledge(gql, donor, campaign["id"])
    tokens = [None, owner.token, donor, f.admin(gql).token]
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), results
    assert len(operations) >= 15
    sent = 0

    for operation in operations:

        @given(case=operation.as_strategy(), token=st.sampled_from(tokens))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any, token: str | None) -> None:
            nonlocal sent
            body = case.as_transport_kwargs(base_url="http://test")["json"]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            check(client.post("/graphql", json=body, headers=headers))
            sent += 1

        fuzz()
    print(f"fuzz: {sent} cases over {len(operations)} operations")
    assert sent >= len(operations) * 10

"""Limits on what one request may ask: depth, aliases, tokens, one operation, body
size, and introspection on or off. Each refusal is a clear error, never a 5xx, and
a refused request does nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from graphql import get_introspection_query
from starlette.testclient import TestClient

from careforall.settings import Settings
from tests import factories as f
from tests.helpers.api import GQL

CAMPAIGNS_DEPTH_3 = "{ campaigns { edges { node { id } } } }"
CAMPAIGNS_DEPTH_4 = "{ campaigns { edges { node { totals { raisedCents } } } } }"
CAMPAIGN_TITLES = "{ campaigns { edges { node { title } } } }"


def error_of(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("data") is None, body
    assert len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    return error


def titles(gql: GQL) -> list[str]:
    edges = gql.ok(CAMPAIGN_TITLES)["campaigns"]["edges"]
    return [edge["node"]["title"] for edge in edges]


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: __typename" for i in range(count)) + " }"


def nested_fragments(levels: int, spreads: int, leaf: str) -> str:
    """Each fragment spreads the next one `spreads` times: spreads**levels leaves."""
    parts = ["query { ...F0 }"]
    for i in range(levels):
        body = " ".join([f"...F{i + 1}"] * spreads) if i < levels - 1 else leaf
        parts.append(f"fragment F{i} on Query {{ {body} }}")
    return "\n".join(parts)


# --- depth ---------------------------------------------------------------------------


def test_a_query_at_the_depth_limit_is_answered(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_depth=3))
    assert gql.ok(CAMPAIGNS_DEPTH_3) == {"campaigns": {"edges": []}}


def test_a_query_past_the_depth_limit_is_refused(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_depth=3))
    error = error_of(gql(CAMPAIGNS_DEPTH_4))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert error["message"] == (
        "The query is nested 4 levels deep; at most 3 are allowed."
    )


def test_depth_counts_through_fragments(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_depth=3))
    query = """
    query { campaigns { edges { ...Edge } } }
    fragment Edge on CampaignEdge {
      node { ... on Campaign { totals { raisedCents } } }
    }
    """
    assert error_of(gql(query))["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_introspection_passes_every_default_limit(gql: GQL) -> None:
    """GraphiQL's own introspection query: deep, but its `__` fields do not count
    (graphql-core's MaxIntrospectionDepthRule bounds them)."""
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    data = gql.ok(query)
    assert data["__schema"]["queryType"]["name"] == "Query"


# --- aliases ------------------------------------------------------------------------


def test_thirty_aliases_are_answered_and_thirty_one_refused(gql: GQL) -> None:
    assert len(gql.ok(aliases(30))) == 30
    error = error_of(gql(aliases(31)))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert error["message"] == "The document uses 31 aliases; at most 30 are allowed."


def test_aliases_count_each_time_a_fragment_is_spread(gql: GQL) -> None:
    fragment = "fragment Many on Query { " + aliases(16)[2:-2] + " }"
    assert gql.ok("query { ...Many } " + fragment)
    body = gql("query { ...Many ... on Query { ...Many } } " + fragment)
    assert "32 aliases" in error_of(body)["message"]


def test_nested_fragments_are_measured_once_each(gql: GQL) -> None:
    """8**8 aliased leaves in ~100 tokens: refused at once, not walked leaf by leaf
    (strawberry's own limiters take seconds on this, and ever longer)."""
    started = time.perf_counter()
    body = gql(nested_fragments(9, 8, "a: __typename"))
    assert "16777216 aliases" in error_of(body)["message"]
    # The same shape without aliases is a valid query, also answered at once.
    assert gql.ok(nested_fragments(9, 8, "__typename")) == {"__typename": "Query"}
    assert time.perf_counter() - started < 2.0


def test_an_unknown_fragment_is_a_validation_error(gql: GQL) -> None:
    error = error_of(gql("{ campaigns { edges { ...Nope } } }"))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "Nope" in error["message"]


# --- tokens -------------------------------------------------------------------------


def test_a_document_over_the_token_limit_is_not_parsed(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_tokens=12))
    assert gql.ok("{ a: __typename b: __typename c: __typename }")  # 11 tokens
    error = error_of(gql("{ a: __typename b: __typename c: __typename d: __typename }"))
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "more than 12 tokens" in error["message"]


def test_the_default_token_limit_comes_before_validation(gql: GQL) -> None:
    error = error_of(gql(aliases(700)))  # 2,102 tokens
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "more than 2000 tokens" in error["message"]


# --- one operation per request -----------------------------------------------------


def test_a_batch_is_refused_and_none_of_it_runs(client: TestClient, gql: GQL) -> None:
    organiser = f.register(gql)
    batch = [
        {
            "query": f.CREATE_CAMPAIGN,
            "variables": {
                "input": {
                    "title": f"Batch {i}",
                    "description": "d",
                    "category": "c",
                    "goalCents": 100,
                }
            },
        }
        for i in range(3)
    ]
    response = client.post(
        "/graphql", json=batch, headers={"Authorization": f"Bearer {organiser.token}"}
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "atch" in error["message"]
    assert titles(gql) == []


def test_only_the_named_operation_of_a_document_runs(
    gql: GQL, client: TestClient
) -> None:
    organiser = f.register(gql)
    document = " ".join(
        f"mutation {name} {{ createCampaign(input: {{title: {json.dumps(name)}, "
        'description: "d", category: "c", goalCents: 100}) { id } }'
        for name in ("First", "Second")
    )
    response = client.post(
        "/graphql",
        json={"query": document, "operationName": "Second"},
        headers={"Authorization": f"Bearer {organiser.token}"},
    )
    assert response.status_code == 200 and "errors" not in response.json()
    assert titles(gql) == ["Second"]


# --- request body size ---------------------------------------------------------------


def padded(size: int, query: str = "{ __typename }") -> bytes:
    """A valid JSON GraphQL request of exactly `size` bytes."""
    bare = json.dumps({"query": query, "variables": {"pad": ""}}).encode()
    body = json.dumps({"query": query, "variables": {"pad": "x" * (size - len(bare))}})
    assert len(body) == size
    return body.encode()


@pytest.fixture
def small_body(app_factory: Callable[..., TestClient]) -> TestClient:
    return app_factory(max_body_bytes=2000)


def post_raw(client: TestClient, content: bytes | Iterator[bytes]) -> Any:
    return client.post(
        "/graphql", content=content, headers={"Content-Type": "application/json"}
    )


def test_a_body_at_the_limit_is_answered(small_body: TestClient) -> None:
    response = post_raw(small_body, padded(2000))
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


def test_a_body_over_the_limit_is_413_in_json(small_body: TestClient) -> None:
    response = post_raw(small_body, padded(2001))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "larger than the limit of 2000 bytes" in error["message"]


def test_a_streamed_body_is_counted_as_it_arrives(small_body: TestClient) -> None:
    """No Content-Length (chunked): the limit still holds."""

    def chunks() -> Iterator[bytes]:
        body = padded(5000)
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    response = post_raw(small_body, chunks())
    assert response.status_code == 413
    small_within = post_raw(small_body, iter([padded(1500)[:700], padded(1500)[700:]]))
    assert small_within.status_code == 200


def test_an_oversized_request_does_nothing(small_body: TestClient) -> None:
    gql = GQL(small_body)
    organiser = f.register(gql)
    campaign_input = {
        "title": "Too big",
        "description": "x" * 3000,
        "category": "c",
        "goalCents": 100,
    }
    response = small_body.post(
        "/graphql",
        json={"query": f.CREATE_CAMPAIGN, "variables": {"input": campaign_input}},
        headers={"Authorization": f"Bearer {organiser.token}"},
    )
    assert response.status_code == 413
    assert titles(gql) == []


def test_the_default_limit_is_one_mebibyte(client: TestClient) -> None:
    assert post_raw(client, padded(1024 * 1024)).status_code == 200
    assert post_raw(client, padded(1024 * 1024 + 1)).status_code == 413


# --- introspection -----------------------------------------------------------------

SCHEMA_NAME = "{ __schema { queryType { name } } }"


def test_introspection_is_on_by_default(gql: GQL) -> None:
    assert gql.ok(SCHEMA_NAME) == {"__schema": {"queryType": {"name": "Query"}}}
    assert gql.ok('{ __type(name: "Pledge") { name } }') == {
        "__type": {"name": "Pledge"}
    }


def test_introspection_can_be_turned_off(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(introspection=False))
    for query in (SCHEMA_NAME, '{ __type(name: "Pledge") { name } }'):
        body = gql(query)
        assert body["data"] is None
        for error in body["errors"]:
            assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
            assert "introspection has been disabled" in error["message"]
    # Clients still learn type names, and every ordinary query works.
    assert gql.ok("{ __typename }") == {"__typename": "Query"}
    assert gql.ok(CAMPAIGNS_DEPTH_3) == {"campaigns": {"edges": []}}


# --- settings -------------------------------------------------------------------------


def test_limits_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "CAREFORALL_INTROSPECTION": "off",
            "CAREFORALL_GRAPHQL_MAX_DEPTH": "7",
            "CAREFORALL_GRAPHQL_MAX_ALIASES": "5",
            "CAREFORALL_GRAPHQL_MAX_TOKENS": "900",
            "CAREFORALL_MAX_BODY_BYTES": "65536",
        }
    )
    assert settings.introspection is False
    assert (
        settings.graphql_max_depth,
        settings.graphql_max_aliases,
        settings.graphql_max_tokens,
        settings.max_body_bytes,
    ) == (7, 5, 900, 65536)
    defaults = Settings.from_env({})
    assert defaults.introspection is True
    assert (
        defaults.graphql_max_depth,
        defaults.graphql_max_aliases,
        defaults.graphql_max_tokens,
        defaults.max_body_bytes,
    ) == (10, 30, 2000, 1024 * 1024)


def test_a_nul_character_is_found_wherever_the_arguments_hold_it() -> None:
    from careforall.api.inputs import PledgeInput
    from careforall.api.limits import _has_nul

    def pledge(**given: Any) -> PledgeInput:
        fields = {"campaign_id": "cmp_1", "amount_cents": 1, "idempotency_key": "k"}
        return PledgeInput(**{**fields, **given})

    clean: list[Any] = [
        {"input": pledge(message="fine", donor_name=None)},
        {"ids": ["a", "b"], "n": 3, "flag": True, "none": None},
        {"cls": PledgeInput, "nested": [{"deeper": ("x", pledge())}]},
    ]
    dirty: list[Any] = [
        {"input": pledge(message="get well\x00")},
        {"ids": ["a", "b\x00"]},
        {"nested": [{"deeper": ("x", pledge(idempotency_key="\x00"))}]},
        {"id": "\x00"},
    ]
    assert [_has_nul(arguments) for arguments in clean] == [False] * len(clean)
    assert [_has_nul(arguments) for arguments in dirty] == [True] * len(dirty)

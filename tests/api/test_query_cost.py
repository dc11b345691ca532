"""What one answer may cost: the query cost (list sizes multiplied through
nested lists) refused at validation, and the answer size refused before it is
sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from tests import factories as f
from tests.helpers.api import GQL

ONE_CAMPAIGNS_PAGE = (
    "campaigns(first: 100) { edges { node { "
    "recentDonations(first: 50) { donorName amountCents currency message createdAt } "
    "owner { name } totals { raisedCents } } } }"
)
# Thirty aliases of the dearest page: a 4.7 KB document, about 918,000 values.
ATTACK = "{ " + " ".join(f"a{i}: {ONE_CAMPAIGNS_PAGE}" for i in range(30)) + " }"
# 1 (campaigns) + 5 edges x (1 + node 1 + id 1) = 16
FIVE_IDS = "query($n: Int) { campaigns(first: $n) { edges { node { id } } } }"
# 1 + 3 edges x (1 + node (1 + 4 donations x (1 + amountCents 1))) = 31
NESTED = (
    "{ campaigns(first: 3) { edges { node { "
    "recentDonations(first: 4) { amountCents } } } } }"
)


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("data") is None, body
    assert len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    return error


# --- the query cost ---------------------------------------------------------------


def test_the_thirty_alias_query_is_refused_at_validation_with_its_cost(
    gql: GQL,
) -> None:
    error = refusal(gql(ATTACK))

    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "918,030 values" in error["message"]
    assert "at most 5,000" in error["message"]


def test_a_query_at_the_cost_limit_is_answered_and_one_past_it_refused(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_cost=16))

    assert gql.ok(FIVE_IDS, {"n": 5}) == {"campaigns": {"edges": []}}
    error = refusal(gql(FIVE_IDS, {"n": 6}))  # 1 + 6 x 3
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert error["message"].startswith("The query may return 19 values; at most 16")


def test_nested_lists_multiply(app_factory: Callable[..., TestClient]) -> None:
    assert GQL(app_factory(graphql_max_cost=31)).ok(NESTED)
    error = refusal(GQL(app_factory(graphql_max_cost=30))(NESTED))
    assert "31 values; at most 30" in error["message"]


def test_a_connection_without_first_costs_its_default_page(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_cost=60))  # 1 + 20 x 3 = 61
    error = refusal(gql("{ campaigns { edges { node { id } } } }"))
    assert "61 values" in error["message"]
    # An explicit null is the default page too.
    assert "61 values" in refusal(gql(FIVE_IDS, {"n": None}))["message"]


def test_a_fragment_costs_as_much_as_its_fields(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_cost=30))
    query = (
        "query { campaigns(first: 3) { edges { node { ...Recent } } } }\n"
        "fragment Recent on Campaign { recentDonations(first: 4) { amountCents } }"
    )
    assert "31 values" in refusal(gql(query))["message"]


def test_introspection_is_not_refused_for_its_cost(gql: GQL) -> None:
    assert gql.ok("{ __schema { types { name fields { name } } } }")["__schema"]


# --- the answer size --------------------------------------------------------------


def test_an_answer_over_the_size_limit_is_refused_not_sent(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_response_bytes=2000))
    organiser = f.register(gql)
    for _ in range(3):
        f.campaign(gql, organiser.token, description="d" * 900)

    assert gql.ok("{ campaigns { edges { node { id } } } }")
    body = gql("{ campaigns { edges { node { id description } } } }")

    error = refusal(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "at most 2,000 are sent" in error["message"]
    assert "d" * 100 not in str(body)


def test_fragments_that_double_at_every_level_are_refused_quickly(gql: GQL) -> None:
    """Spread twice under a field at each of 60 levels, a fragment asks for a
    walk of 2^60 fields: it is refused after a bounded walk, not measured."""
    levels = 60
    parts = ['query Q { pledge(id: "x") { ...F0 } }']
    for i in range(levels):
        inner = f"...F{i + 1}" if i + 1 < levels else "id"
        parts.append(
            f"fragment F{i} on Pledge {{ a: campaign {{ ... on Pledge {{ {inner} }} }}"
            f" b: campaign {{ ... on Pledge {{ {inner} }} }} }}"
        )
    # Without the bound this call would not return for hours.
    error = refusal(gql("\n".join(parts)))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "nested fragments" in error["message"]

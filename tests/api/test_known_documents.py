"""A document seen before is not parsed or validated again
(careforall/api/caching.py), yet every answer is what a first sight gives:
its errors and codes, the depth, alias and cost limits of the app that
answers, and a cost read from the variables of each request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until

DEEP = "{ campaigns { edges { node { owner { name } } } } }"  # depth 4
FIVE_IDS = "query($n: Int) { campaigns(first: $n) { edges { node { id } } } }"
TOTALS = (
    "query($id: ID!) { campaignTotals(campaignId: $id) { raisedCents pledgeCount } }"
)


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("data") is None, body
    assert len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    return error


def test_an_invalid_document_is_refused_every_time(gql: GQL) -> None:
    for _ in range(3):
        error = only_error(gql("{ campaigns { nope } }"))
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "nope" in error["message"]


def test_a_document_that_does_not_parse_is_refused_every_time(gql: GQL) -> None:
    for _ in range(3):
        assert gql.code("{ campaigns { ") == "GRAPHQL_PARSE_FAILED"


def test_a_valid_document_stays_valid_after_an_invalid_one_was_refused(
    gql: GQL,
) -> None:
    assert gql.code("{ version nope }") == "GRAPHQL_VALIDATION_FAILED"
    assert gql.ok("{ version }")["version"]
    assert gql.code("{ version nope }") == "GRAPHQL_VALIDATION_FAILED"


def test_each_app_applies_its_own_depth_limit_to_a_known_document(
    app_factory: Callable[..., TestClient],
) -> None:
    lenient = GQL(app_factory())
    strict = GQL(app_factory(graphql_max_depth=3))

    for _ in range(2):
        assert lenient.ok(DEEP) == {"campaigns": {"edges": []}}
        error = only_error(strict(DEEP))
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "4 levels deep" in error["message"]


def test_a_cost_read_from_the_variables_is_measured_on_every_request(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_cost=16))

    for _ in range(2):
        assert gql.ok(FIVE_IDS, {"n": 5}) == {"campaigns": {"edges": []}}
        error = only_error(gql(FIVE_IDS, {"n": 6}))
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "19 values; at most 16" in error["message"]


def test_a_static_cost_is_kept_per_operation_of_a_document(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(graphql_max_cost=16))
    document = (
        "query Small { campaigns(first: 5) { edges { node { id } } } } "
        "query Large { campaigns(first: 6) { edges { node { id } } } }"
    )

    def run(name: str) -> dict[str, Any]:
        response = gql.client.post(
            "/graphql", json={"query": document, "operationName": name}
        )
        body: dict[str, Any] = response.json()
        return body

    for _ in range(2):
        assert run("Small") == {"data": {"campaigns": {"edges": []}}}
        assert "19 values" in only_error(run("Large"))["message"]


def uncached(gql: GQL, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The query's data, executed: a new nonce in `extensions` makes every
    body new to the response cache (as the benchmark's cache misses do)."""
    response = gql.client.post(
        "/graphql",
        json={"query": query, "variables": variables, "extensions": {"n": f.unique()}},
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def test_a_known_documents_answers_follow_the_data_and_the_variables(
    gql: GQL,
) -> None:
    organiser = f.register(gql)
    first = f.campaign(gql, organiser.token)["id"]
    second = f.campaign(gql, organiser.token)["id"]
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, first, 1_500)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor)

    wait_until(
        lambda: (
            uncached(gql, TOTALS, {"id": first})["campaignTotals"]["pledgeCount"] == 1
        )
    )
    for _ in range(2):
        assert uncached(gql, TOTALS, {"id": first})["campaignTotals"] == {
            "raisedCents": 1_500,
            "pledgeCount": 1,
        }
        assert uncached(gql, TOTALS, {"id": second})["campaignTotals"] == {
            "raisedCents": 0,
            "pledgeCount": 0,
        }


def test_a_known_document_still_answers_with_its_error_codes(gql: GQL) -> None:
    query = "query($id: ID!) { pledge(id: $id) { id } }"
    for _ in range(2):
        # A variable of the wrong type: a request error, with its code.
        assert gql.code(query, {"id": {"not": "an id"}}) == "BAD_USER_INPUT"
        # A token that is no token: the resolver's own refusal.
        assert gql.code(query, {"id": "pl_x"}, token="nonsense") == "UNAUTHENTICATED"

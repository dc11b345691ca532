"""Search and discovery over GraphQL: `campaigns(search, category, sort)` and
`categories`, their errors, their cost and the response cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from careforall.db import Database
from tests import factories as f
from tests.api.test_response_cache import Counts
from tests.helpers.api import GQL
from tests.helpers.outbox import outbox_drained
from tests.helpers.waiting import wait_until

SEARCH = """
query($search: String, $category: String, $sort: CampaignSort, $first: Int,
      $after: String) {
  campaigns(search: $search, category: $category, sort: $sort, first: $first,
            after: $after) {
    edges { cursor node { id title category } }
    pageInfo { hasNextPage endCursor }
  }
}"""
CATEGORIES = "{ categories }"


def ids(gql: GQL, **variables: Any) -> list[str]:
    """Every id of the list, page by page."""
    found: list[str] = []
    after = None
    while True:
        page = gql.ok(SEARCH, {"first": 2, "after": after} | variables)["campaigns"]
        found += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def test_search_category_and_sort_over_graphql(gql: GQL) -> None:
    organiser = f.register(gql)
    knee = f.campaign(
        gql, organiser.token, description="Physiotherapy after a knee operation."
    )["id"]
    eyes = f.campaign(
        gql, organiser.token, description="Cataract surgery.", category="eyes"
    )["id"]
    assert ids(gql, search="physio") == [knee]
    assert ids(gql, search='"*:(') == [eyes, knee]  # no words: everything
    assert ids(gql, category="eyes") == [eyes]
    assert ids(gql, search="cataract", category="surgery") == []
    for sort in ("NEWEST", "MOST_RAISED", "CLOSEST_TO_GOAL", "TRENDING"):
        assert ids(gql, sort=sort) == [eyes, knee]
    assert gql.ok(CATEGORIES)["categories"] == ["eyes", "surgery"]


def test_a_cursor_of_another_sort_and_bad_input_are_bad_user_input(
    gql: GQL,
) -> None:
    organiser = f.register(gql)
    for _ in range(2):
        f.campaign(gql, organiser.token)
    page = gql.ok(SEARCH, {"first": 1, "sort": "MOST_RAISED"})["campaigns"]
    cursor = page["pageInfo"]["endCursor"]
    assert gql.code(SEARCH, {"after": cursor, "sort": "TRENDING"}) == "BAD_USER_INPUT"
    assert gql.code(SEARCH, {"after": cursor}) == "BAD_USER_INPUT"
    assert gql.code(SEARCH, {"search": "x" * 201}) == "BAD_USER_INPUT"
    assert gql.code(SEARCH, {"category": "x" * 51}) == "BAD_USER_INPUT"
    assert gql.code(SEARCH, {"sort": "CHEAPEST"}) is not None


def test_search_answers_are_kept_by_the_response_cache(gql: GQL, db: Database) -> None:
    organiser = f.register(gql)
    f.campaign(gql, organiser.token, description="Dialysis twice a week.")
    wait_until(lambda: outbox_drained(db))
    counts = Counts()
    variables = {"search": "dialysis", "sort": "NEWEST"}
    first = gql.ok(SEARCH, variables)
    assert [gql.ok(SEARCH, variables) for _ in range(2)] == [first] * 2
    gql.ok(CATEGORIES)
    gql.ok(CATEGORIES)
    assert counts.since() == (3, 2)


def test_campaigns_waiting_for_review_are_never_found_nor_their_category_listed(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(campaign_review="required"))
    organiser, admin = f.register(gql), f.admin(gql)
    f.campaign(
        gql, organiser.token, description="Waiting: hydrotherapy.", category="spa"
    )
    for token in (None, organiser.token, admin.token):
        assert gql.ok(SEARCH, {"search": "hydrotherapy"}, token)["campaigns"] == {
            "edges": [],
            "pageInfo": {"hasNextPage": False, "endCursor": None},
        }
        assert gql.ok(CATEGORIES, None, token)["categories"] == []

"""myCampaigns: a signed-in organiser's own campaigns, every status, newest
first, paged; nobody else's; refused without an account."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.helpers.api import GQL

MY_CAMPAIGNS = """
query($first: Int, $after: String) {
  myCampaigns(first: $first, after: $after) {
    edges { cursor node { id title status owner { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
SET_STATUS = """
mutation($id: ID!, $status: CampaignStatus!) {
  setCampaignStatus(id: $id, status: $status) { id status }
}"""


def mine(gql: GQL, token: str, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = gql.ok(MY_CAMPAIGNS, variables, token)["myCampaigns"]
    return result


def test_lists_only_the_callers_campaigns_in_every_status_newest_first(
    gql: GQL,
) -> None:
    olive = f.register(gql, name="Olive")
    other = f.register(gql, name="Other")
    first = f.campaign(gql, olive.token)
    f.campaign(gql, other.token)
    second = f.campaign(gql, olive.token)
    gql.ok(SET_STATUS, {"id": first["id"], "status": "CLOSED"}, olive.token)

    page = mine(gql, olive.token)

    nodes = [edge["node"] for edge in page["edges"]]
    assert [(n["id"], n["status"]) for n in nodes] == [
        (second["id"], "ACTIVE"),
        (first["id"], "CLOSED"),
    ]
    assert {n["owner"]["id"] for n in nodes} == {olive.id}
    assert page["pageInfo"]["hasNextPage"] is False


def test_pages_with_cursors_without_gaps_or_repeats(gql: GQL) -> None:
    olive = f.register(gql)
    made = [f.campaign(gql, olive.token)["id"] for _ in range(5)]

    seen: list[str] = []
    after = None
    while True:
        page = mine(gql, olive.token, first=2, after=after)
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert seen == list(reversed(made))


def test_a_new_account_has_none(gql: GQL) -> None:
    assert mine(gql, f.register(gql).token)["edges"] == []


def test_anonymous_session_and_no_token_are_unauthenticated(gql: GQL) -> None:
    assert gql.code(MY_CAMPAIGNS) == "UNAUTHENTICATED"
    assert gql.code(MY_CAMPAIGNS, token=f.anonymous(gql)) == "UNAUTHENTICATED"


def test_a_bad_cursor_or_page_size_is_bad_user_input(gql: GQL) -> None:
    token = f.register(gql).token
    assert gql.code(MY_CAMPAIGNS, {"after": "nonsense"}, token) == "BAD_USER_INPUT"
    assert gql.code(MY_CAMPAIGNS, {"first": 0}, token) == "BAD_USER_INPUT"

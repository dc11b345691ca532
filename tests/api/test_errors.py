"""No input, however malformed, yields a 5xx or leaks internals: every refusal is
JSON with an `extensions.code` and a message a person can read."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from careforall.api.errors import INTERNAL_MESSAGE
from careforall.domain.errors import ERROR_CODES
from careforall.services import campaigns
from tests import factories as f
from tests.helpers.api import GQL

# The contract's codes, Apollo's two document codes, and BAD_REQUEST (Apollo's code
# for an HTTP request that is not a GraphQL request at all).
CODES = {
    *ERROR_CODES,
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "BAD_REQUEST",
}
LEAKS = (
    "Traceback",
    'File "',
    ".py",
    "site-packages",
    "careforall.",
    "sqlalchemy",
    "sqlite",
    "SELECT ",
    "INSERT INTO",
    "IntegrityError",
    "OperationalError",
    "AttributeError",
    "TypeError",
    "KeyError",
    "NoneType",
)
CAMPAIGNS = "{ campaigns { edges { node { id title description } } } }"
MB = 1_000_000


def refusal(response: httpx2.Response) -> dict[str, Any]:
    """The first error of a clean refusal: < 500, JSON, a known code, no internals."""
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body.get("errors"), body
    for error in body["errors"]:
        assert error["extensions"]["code"] in CODES, error
        message = error["message"]
        assert isinstance(message, str) and len(message) >= 10, error
        for leak in LEAKS:
            assert leak not in message, (leak, message)
    first: dict[str, Any] = body["errors"][0]
    return first


def post(
    client: TestClient,
    body: Any = None,
    *,
    content: bytes | None = None,
    content_type: str = "application/json",
    token: str | None = None,
) -> httpx2.Response:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = content if content is not None else json.dumps(body).encode()
    return client.post("/graphql", content=data, headers=headers)


# --- requests that are not GraphQL requests ----------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "words"),
    [
        pytest.param(b"{query", "application/json", "JSON", id="not-json"),
        pytest.param(b"", "application/json", "JSON", id="empty-body"),
        pytest.param(b"\xff\xfe{}", "application/json", "JSON", id="invalid-utf8"),
        pytest.param(b"[]", "application/json", "atch", id="empty-list"),
        pytest.param(
            b'[{"query": "{ me { id } }"}]', "application/json", "atch", id="batch"
        ),
        pytest.param(b"5", "application/json", "object", id="number"),
        pytest.param(b'"{ me { id } }"', "application/json", "object", id="string"),
        pytest.param(b"null", "application/json", "object", id="null"),
        pytest.param(b"true", "application/json", "object", id="bool"),
        pytest.param(b"{}", "application/json", "query", id="no-query"),
        pytest.param(b'{"query": 5}', "application/json", "query", id="query-number"),
        pytest.param(
            b'{"query": ["{ me { id } }"]}',
            "application/json",
            "query",
            id="query-list",
        ),
        pytest.param(
            b'{"query": "{ me { id } }", "variables": [1]}',
            "application/json",
            "variables",
            id="variables-list",
        ),
        pytest.param(
            b'{"query": "{ me { id } }", "variables": "x"}',
            "application/json",
            "variables",
            id="variables-string",
        ),
        pytest.param(
            b'{"query": "{ me { id } }", "operationName": "Nope"}',
            "application/json",
            "Nope",
            id="unknown-operation",
        ),
        pytest.param(
            b'{"query": "query($id: ID!) { campaign(id: $id) { id } }",'
            b' "variables": {"id": "\\ud800"}}',
            "application/json",
            "escape",
            id="lone-surrogate-variable",
        ),
        pytest.param(
            # UTF-16, which json.loads accepts too: no byte spells the escape.
            '{"query": "{ campaign(id: \\"\\ud800\\") { id } }"}'.encode("utf-16-le"),
            "application/json",
            "escape",
            id="lone-surrogate-utf-16",
        ),
        pytest.param(
            # No escape: the surrogate's own bytes, which json.loads accepts.
            b'{"query": "query($id: ID!) { campaign(id: $id) { id } }",'
            b' "variables": {"id": "\xed\xa0\x80"}}',
            "application/json",
            "escape",
            id="lone-surrogate-bytes",
        ),
        pytest.param(
            b'{"query": "{ campaign(id: \\"\\ud800\\") { id } }"}',
            "application/json",
            "escape",
            id="lone-surrogate-in-document",
        ),
        pytest.param(b"{ me { id } }", "text/plain", "content type", id="text-plain"),
        pytest.param(
            b"query=%7Bme%7Bid%7D%7D",
            "application/x-www-form-urlencoded",
            "content type",
            id="form",
        ),
        pytest.param(
            b'{"query": "subscription { campaignTotals(campaignId: \\"x\\")'
            b' { raisedCents } }"}',
            "application/json",
            "subscription",
            id="subscription-over-post",
        ),
    ],
)
def test_a_request_that_is_not_graphql_is_a_json_400(
    client: TestClient, content: bytes, content_type: str, words: str
) -> None:
    response = post(client, content=content, content_type=content_type)
    assert response.status_code == 400
    error = refusal(response)
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert words.lower() in error["message"].lower()


def test_a_mutation_over_get_is_refused_and_does_nothing(
    client: TestClient, gql: GQL
) -> None:
    query = "mutation { startAnonymousSession { token } }"
    response = client.get("/graphql", params={"query": query})
    assert 400 <= response.status_code < 500
    assert refusal(response)["extensions"]["code"] == "BAD_REQUEST"
    organiser = f.register(gql)
    campaign_input = '{title: "t", description: "d", category: "c", goalCents: 100}'
    response = client.get(
        "/graphql",
        params={
            "query": f"mutation {{ createCampaign(input: {campaign_input}) {{ id }} }}"
        },
        headers={"Authorization": f"Bearer {organiser.token}"},
    )
    assert 400 <= response.status_code < 500
    assert gql.ok(CAMPAIGNS)["campaigns"]["edges"] == []


def test_a_query_over_get_is_answered(client: TestClient) -> None:
    response = client.get(
        "/graphql",
        params={"query": "{ me { id } }"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"me": None}}


def test_other_methods_are_refused_without_a_5xx(client: TestClient) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        assert (
            client.request(
                method, "/graphql", json={"query": "{ me { id } }"}
            ).status_code
            == 405
        )


def test_browsers_get_graphiql(client: TestClient) -> None:
    response = client.get(
        "/graphql", headers={"Accept": "text/html,application/xhtml+xml"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


# --- documents that are not valid GraphQL ------------------------------------------


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ me { ", "GRAPHQL_PARSE_FAILED"),
        ("query {", "GRAPHQL_PARSE_FAILED"),
        ("}}}", "GRAPHQL_PARSE_FAILED"),
        ("{ " + "me { " * 2000 + "}" * 2001, "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ me { id password } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ campaigns(page: 2) { edges { cursor } } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ campaign { id } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ campaign(id: 5.5) { id } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ me }", "GRAPHQL_VALIDATION_FAILED"),
        ("query($x: Int) { campaign(id: $x) { id } }", "GRAPHQL_VALIDATION_FAILED"),
        ("query($x: Nope) { me { id } }", "GRAPHQL_VALIDATION_FAILED"),
        (
            "mutation { createCampaign(input: {title: 1}) { id } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "{ campaigns(status: OPEN) { edges { cursor } } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ],
)
def test_a_document_that_is_not_valid_graphql(
    client: TestClient, query: str, code: str
) -> None:
    response = post(client, {"query": query})
    assert response.status_code == 200
    assert refusal(response)["extensions"]["code"] == code
    assert response.json().get("data") is None


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param({}, id="missing"),
        pytest.param({"input": None}, id="null"),
        pytest.param({"input": "a string"}, id="string"),
        pytest.param(
            {"input": {"title": "t", "description": "d", "category": "c"}},
            id="missing-field",
        ),
        pytest.param(
            {
                "input": {
                    "title": "t",
                    "description": "d",
                    "category": "c",
                    "goalCents": 1,
                    "owner": "me",
                }
            },
            id="unknown-field",
        ),
        pytest.param(
            {
                "input": {
                    "title": "t",
                    "description": "d",
                    "category": "c",
                    "goalCents": "100",
                }
            },
            id="int-as-string",
        ),
        pytest.param(
            {
                "input": {
                    "title": "t",
                    "description": "d",
                    "category": "c",
                    "goalCents": 1.5,
                }
            },
            id="fraction",
        ),
        pytest.param(
            {
                "input": {
                    "title": "t",
                    "description": "d",
                    "category": "c",
                    "goalCents": 2**31,
                }
            },
            id="int-overflow",
        ),
        pytest.param(
            {
                "input": {
                    "title": ["t"],
                    "description": "d",
                    "category": "c",
                    "goalCents": 1,
                }
            },
            id="string-as-list",
        ),
        pytest.param(
            {
                "input": {
                    "title": "t",
                    "description": "d",
                    "category": "c",
                    "goalCents": 1,
                    "endsAt": "soon",
                }
            },
            id="bad-datetime",
        ),
    ],
)
def test_variables_of_the_wrong_shape_are_bad_user_input(
    client: TestClient, gql: GQL, variables: dict[str, Any]
) -> None:
    organiser = f.register(gql)
    response = post(
        client,
        {"query": f.CREATE_CAMPAIGN, "variables": variables},
        token=organiser.token,
    )
    assert response.status_code == 200
    error = refusal(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$input" in error["message"]  # names the variable that was wrong
    assert gql.ok(CAMPAIGNS)["campaigns"]["edges"] == []


def test_an_enum_or_id_variable_of_the_wrong_kind_is_bad_user_input(
    client: TestClient,
) -> None:
    query = """query($s: CampaignStatus, $n: Int) {
      campaigns(status: $s, first: $n) { edges { cursor } }
    }"""
    for variables in ({"s": "OPEN"}, {"s": 1}, {"n": "ten"}, {"n": True}):
        response = post(client, {"query": query, "variables": variables})
        assert refusal(response)["extensions"]["code"] == "BAD_USER_INPUT"
    response = post(
        client,
        {
            "query": "query($id: ID!) { campaign(id: $id) { id } }",
            "variables": {"id": {"a": 1}},
        },
    )
    assert refusal(response)["extensions"]["code"] == "BAD_USER_INPUT"


# --- big and unusual strings -------------------------------------------------------


@pytest.mark.parametrize("field", ["title", "description", "category", "currency"])
def test_a_megabyte_campaign_field_is_bad_user_input(
    client: TestClient, gql: GQL, field: str
) -> None:
    organiser = f.register(gql)
    data = {
        "title": "t",
        "description": "d",
        "category": "c",
        "goalCents": 100,
        field: "x" * MB,
    }
    response = post(
        client,
        {"query": f.CREATE_CAMPAIGN, "variables": {"input": data}},
        token=organiser.token,
    )
    error = refusal(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert field in error["message"]
    assert len(response.content) < 2000  # the input is not echoed back
    assert gql.ok(CAMPAIGNS)["campaigns"]["edges"] == []


def test_megabyte_strings_elsewhere_are_refused(client: TestClient, gql: GQL) -> None:
    big = "x" * MB
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = f.pledge(gql, donor, campaign["id"])
    cases: list[tuple[str, dict[str, Any], str | None, str]] = [
        (
            f.REGISTER,
            {"email": f"{big}@example.org", "password": "correct horse", "name": "N"},
            None,
            "BAD_USER_INPUT",
        ),
        (
            f.REGISTER,
            {"email": "big@example.org", "password": big, "name": "N"},
            None,
            "BAD_USER_INPUT",
        ),
        (
            f.REGISTER,
            {"email": "big@example.org", "password": "correct horse", "name": big},
            None,
            "BAD_USER_INPUT",
        ),
        (f.LOGIN, {"email": organiser.email, "password": big}, None, "UNAUTHENTICATED"),
        (
            f.CREATE_PLEDGE,
            {
                "input": {
                    "campaignId": campaign["id"],
                    "amountCents": 1,
                    "idempotencyKey": big,
                }
            },
            donor,
            "BAD_USER_INPUT",
        ),
        (
            f.CREATE_PLEDGE,
            {
                "input": {
                    "campaignId": campaign["id"],
                    "amountCents": 1,
                    "idempotencyKey": "k",
                    "message": big,
                }
            },
            donor,
            "BAD_USER_INPUT",
        ),
        (
            f.CREATE_PLEDGE,
            {"input": {"campaignId": big, "amountCents": 1, "idempotencyKey": "k2"}},
            donor,
            "NOT_FOUND",
        ),
        (f.AUTHORIZE, {"id": pledge["id"], "pm": big}, donor, "BAD_USER_INPUT"),
        (
            "query($a: String) { campaigns(after: $a) { edges { cursor } } }",
            {"a": big},
            None,
            "BAD_USER_INPUT",
        ),
        (
            f.REGISTER,
            {
                "email": "n@example.org",
                "password": "correct horse",
                "name": "N",
                "anon": big,
            },
            None,
            "BAD_USER_INPUT",
        ),
    ]
    for query, variables, token, code in cases:
        response = post(client, {"query": query, "variables": variables}, token=token)
        assert refusal(response)["extensions"]["code"] == code, (query, code)
        assert len(response.content) < 2000
    assert (
        gql.ok(f.PLEDGE, {"id": pledge["id"]}, donor)["pledge"]["status"] == "PENDING"
    )


def test_a_huge_token_is_unauthenticated(client: TestClient) -> None:
    response = post(client, {"query": "{ me { id } }"}, token="x" * 100_000)
    assert refusal(response)["extensions"]["code"] == "UNAUTHENTICATED"


def test_unicode_round_trips(gql: GQL) -> None:
    organiser = f.register(gql, name="Zoë 🌷")
    title = "Operación para Zoë 💖 שלום 中文 \u202e e\u0301"
    description = "line one\nline two\u0001after a control\ttab"
    campaign = f.campaign(gql, organiser.token, title=title, description=description)
    read = gql.ok(
        "query($id: ID!) { campaign(id: $id) { title description owner { name } } }",
        {"id": campaign["id"]},
    )["campaign"]
    assert read == {
        "title": title,
        "description": description,
        "owner": {"name": "Zoë 🌷"},
    }
    donor = f.anonymous(gql)
    key = "ключ-🔑-\u0001"
    pledge = f.pledge(
        gql,
        donor,
        campaign["id"],
        idempotencyKey=key,
        message="💊\u0001",
        donorName="Ünal",
    )
    assert (pledge["idempotencyKey"], pledge["message"], pledge["donorName"]) == (
        key,
        "💊\u0001",
        "Ünal",
    )
    again = f.pledge(
        gql,
        donor,
        campaign["id"],
        idempotencyKey=key,
        message="💊\u0001",
        donorName="Ünal",
    )
    assert again["id"] == pledge["id"]


def test_text_with_a_nul_character_is_refused_and_changes_nothing(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    donor = f.anonymous(gql)
    pledge = {
        "campaignId": campaign["id"],
        "amountCents": 1000,
        "currency": "USD",
        "idempotencyKey": f.unique("key"),
        "message": "get well\u0000",
    }
    assert gql.code(f.CREATE_PLEDGE, {"input": pledge}, donor) == "BAD_USER_INPUT"
    # In an ID, in a literal rather than a variable, in a query as in a mutation.
    literal = '{ campaign(id: "cmp\\u0000") { id } }'
    assert gql.code(literal) == "BAD_USER_INPUT"
    assert (
        gql.code(
            "query($id: ID!) { campaignTotals(campaignId: $id) { campaignId } }",
            {"id": "\u0000"},
        )
        == "BAD_USER_INPUT"
    )
    mine = gql.ok("{ myDonations { edges { node { id } } } }", token=donor)
    assert mine["myDonations"]["edges"] == []
    # A subscription's arguments too.
    with gql.client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"]
    ) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        subscription = (
            "subscription($id: ID!) { campaignTotals(campaignId: $id) { campaignId } }"
        )
        payload = {"query": subscription, "variables": {"id": "cmp\u0000"}}
        ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
        message = ws.receive_json()
    errors = (
        message["payload"]["errors"]
        if message["type"] == "next"
        else message["payload"]
    )
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", message


# --- unexpected failures are masked ------------------------------------------------


def test_an_unexpected_error_is_masked(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(
            'sqlalchemy.exc.OperationalError at File "careforall/db.py", line 3'
        )

    monkeypatch.setattr(campaigns, "get_campaign", broken)
    response = post(client, {"query": '{ campaign(id: "cmp_x") { id } }'})
    assert response.status_code == 200
    body = response.json()
    error = body["errors"][0]
    assert error == {
        "message": INTERNAL_MESSAGE,
        "locations": error["locations"],
        "path": ["campaign"],
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }
    assert "sqlalchemy" not in response.text and "db.py" not in response.text


# --- no schema hints without introspection ----------------------------------------

# Each misspells a name graphql-core would suggest: a field, an argument, a
# type, an enum value in the document and one in a variable.
BY_STATUS = "adminPledges(status: $s) { edges { node { id } } }"
MISSPELT = [
    ("{ campaing { id } }", None),
    ("{ campaigns(frist: 2) { edges { node { id } } } }", None),
    (f"query($s: PledgeStatu) {{ {BY_STATUS} }}", None),
    ("{ adminPledges(status: CAPTURD) { edges { node { id } } } }", None),
    (f"query($s: PledgeStatus) {{ {BY_STATUS} }}", {"s": "CAPTURD"}),
]


def test_without_introspection_errors_suggest_no_names(
    app_factory: Callable[..., TestClient],
) -> None:
    hidden = GQL(app_factory(introspection=False))
    admin = f.admin(hidden).token
    for query, variables in MISSPELT:
        body = hidden(query, variables, admin)
        (error,) = body["errors"]
        assert "Did you mean" not in error["message"], query
        assert "CAPTURED" not in error["message"], query  # the suggested value
        assert error["extensions"]["code"] in (
            "GRAPHQL_VALIDATION_FAILED",
            "BAD_USER_INPUT",
        )


def test_with_introspection_errors_still_suggest_names(gql: GQL) -> None:
    body = gql("{ campaing { id } }")
    assert "Did you mean 'campaign'" in body["errors"][0]["message"]

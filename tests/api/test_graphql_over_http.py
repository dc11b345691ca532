"""GraphQL over HTTP beyond Strawberry's defaults: the answer's media type and
status follow the request's Accept header, a mutation sent with GET is 405,
queries sent with GET carry cache headers, and automatic persisted queries
(Apollo's protocol) run a known hash over GET and POST."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
from starlette.testclient import TestClient

from careforall.api.persisted_queries import PersistedQueries
from tests import factories as f
from tests.helpers.api import GQL

RESPONSE_JSON = "application/graphql-response+json"
CAMPAIGNS = "{ campaigns(first: 5) { edges { node { title } } } }"


def post(client: TestClient, body: Any, accept: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if accept is not None:
        headers["accept"] = accept
    return client.post("/graphql", content=json.dumps(body), headers=headers)


def persisted(query: str, digest: str | None = None) -> dict[str, Any]:
    digest = digest or hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


# --- the media type ------------------------------------------------------------


def test_request_errors_are_400_without_data_for_the_specs_media_type(
    client: TestClient,
) -> None:
    for body in (
        {"query": "{ campaigns("},  # does not parse
        {"query": "{ nope }"},  # does not validate
        {  # a variable that does not coerce
            "query": "query($n: Int) { campaigns(first: $n) { edges { cursor } } }",
            "variables": {"n": "many"},
        },
    ):
        answer = post(client, body, accept=RESPONSE_JSON)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == RESPONSE_JSON
        assert "data" not in answer.json()
        assert answer.json()["errors"]
        # The same request asking for plain JSON: 200, as older clients expect.
        legacy = post(client, body, accept="application/json")
        assert legacy.status_code == 200
        assert legacy.headers["content-type"] == "application/json"


def test_field_errors_keep_200_and_data_for_the_specs_media_type(
    client: TestClient,
) -> None:
    answer = post(
        client, {"query": '{ pledge(id: "plg_missing") { id } }'}, RESPONSE_JSON
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == RESPONSE_JSON
    body = answer.json()
    assert body["data"] == {"pledge": None}
    assert body["errors"][0]["path"] == ["pledge"]


def test_the_answer_type_follows_the_accept_header(client: TestClient) -> None:
    for accept, expected in (
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (RESPONSE_JSON, RESPONSE_JSON),
        (f"{RESPONSE_JSON}, application/json;q=0.9", RESPONSE_JSON),
        (f"application/json, {RESPONSE_JSON};q=0.5", "application/json"),
    ):
        answer = post(client, {"query": CAMPAIGNS}, accept)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == expected, accept
        # Twice: the second answer comes from the response cache.
        again = post(client, {"query": CAMPAIGNS}, accept)
        assert again.headers["content-type"] == expected, accept


# --- GET ------------------------------------------------------------------------


def test_a_mutation_sent_with_get_is_405_and_runs_nothing(
    client: TestClient, gql: GQL
) -> None:
    answer = client.get(
        "/graphql", params={"query": "mutation { startAnonymousSession { token } }"}
    )
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "data" not in answer.json()


def test_public_queries_sent_with_get_may_be_kept_by_a_proxy_for_a_second(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    for query in (
        CAMPAIGNS,
        f'{{ campaign(id: "{campaign_id}") {{ title }} }}',
        f'{{ campaignTotals(campaignId: "{campaign_id}") {{ raisedCents }} }}',
    ):
        answer = client.get("/graphql", params={"query": query})
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "public, max-age=1"
        assert "Authorization" in answer.headers["vary"]
    # The caller's own data, or any answer to a token: private, never stored.
    mine = client.get(
        "/graphql",
        params={"query": "{ me { id } }"},
        headers={"authorization": f"Bearer {organiser.token}"},
    )
    assert mine.status_code == 200
    assert mine.json()["data"]["me"]["id"]
    assert mine.headers["cache-control"] == "private, no-store"
    with_token = client.get(
        "/graphql",
        params={"query": CAMPAIGNS},
        headers={"authorization": f"Bearer {organiser.token}"},
    )
    assert with_token.headers["cache-control"] == "private, no-store"
    failed = client.get("/graphql", params={"query": "{ nope }"})
    assert failed.headers["cache-control"] == "private, no-store"


# --- automatic persisted queries --------------------------------------------------


def test_a_hash_runs_its_document_once_the_document_was_sent(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    f.campaign(gql, organiser.token, title="Chemotherapy for Lea")
    only_hash = {"extensions": persisted(CAMPAIGNS)}
    unknown = post(client, only_hash)
    assert unknown.status_code == 200
    assert unknown.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    sent = post(client, {"query": CAMPAIGNS, **only_hash})
    titles = [e["node"]["title"] for e in sent.json()["data"]["campaigns"]["edges"]]
    assert titles == ["Chemotherapy for Lea"]
    assert post(client, only_hash).json() == sent.json()
    by_get = client.get(
        "/graphql", params={"extensions": json.dumps(only_hash["extensions"])}
    )
    assert by_get.status_code == 200
    assert by_get.json() == sent.json()
    assert by_get.headers["cache-control"] == "public, max-age=1"


def test_a_hash_that_is_not_the_documents_is_refused_and_not_kept(
    client: TestClient,
) -> None:
    wrong = persisted(CAMPAIGNS, digest="0" * 64)
    answer = post(client, {"query": CAMPAIGNS, "extensions": wrong})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "data" not in answer.json()
    later = post(client, {"extensions": wrong})
    code = later.json()["errors"][0]["extensions"]["code"]
    assert code == "PERSISTED_QUERY_NOT_FOUND"
    for bad in (
        {"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}},
        {"persistedQuery": {"version": 1, "sha256Hash": "short"}},
        {"persistedQuery": "yes"},
    ):
        answer = post(client, {"extensions": bad})
        assert answer.status_code == 400, bad
        assert answer.json()["errors"][0]["extensions"]["code"] in (
            "PERSISTED_QUERY_NOT_SUPPORTED",
            "BAD_REQUEST",
        )


def test_a_mutation_by_hash_runs_over_post_and_never_over_get(
    client: TestClient,
) -> None:
    mutation = "mutation { startAnonymousSession { anonymous } }"
    extensions = persisted(mutation)
    first = post(client, {"query": mutation, "extensions": extensions})
    assert first.json()["data"] == {"startAnonymousSession": {"anonymous": True}}
    assert post(client, {"extensions": extensions}).json() == first.json()
    by_get = client.get("/graphql", params={"extensions": json.dumps(extensions)})
    assert by_get.status_code == 405


def test_the_store_keeps_only_the_most_recently_used_documents() -> None:
    store = PersistedQueries(max_entries=2)
    documents = ["{ a }", "{ b }", "{ c }"]
    hashes = [hashlib.sha256(d.encode()).hexdigest() for d in documents]
    for document, digest in zip(documents, hashes, strict=True):
        store.resolve(document, persisted(document, digest))
    assert len(store) == 2
    assert store.resolve(None, persisted("", hashes[2])) == "{ c }"
    try:
        store.resolve(None, persisted("", hashes[0]))
    except Exception as refused:  # noqa: BLE001 - the code is what matters
        assert getattr(refused, "code", None) == "PERSISTED_QUERY_NOT_FOUND"
    else:
        raise AssertionError("the oldest document should have been dropped")

"""The response cache: public queries answered again from memory, never stale
after a commit, never shared when the answer depends on who asks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from graphql import GraphQLObjectType, get_named_type
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from careforall.api.response_cache import (
    MAX_BODY_BYTES,
    MAX_REQUEST_BYTES,
    PUBLIC_ROOT_FIELDS,
    CachedAnswer,
    Misses,
    PublicQuery,
    ResponseCache,
    public_query,
)
from careforall.api.schema import schema
from careforall.db import Database
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.outbox import outbox_drained
from tests.helpers.waiting import wait_until

# Every field an answer to a public query can hold. Each one reads the data
# alone, never the caller, so one answer may serve everyone. A new field here
# must keep that promise before it joins this list.
REVIEWED_PUBLIC_FIELDS = {
    "Query.campaign",
    "Query.campaignTotals",
    "Query.campaigns",
    "Query.categories",
    "Query.version",
    "Campaign.acceptingPledges",
    "Campaign.category",
    "Campaign.createdAt",
    "Campaign.currency",
    "Campaign.description",
    "Campaign.endsAt",
    "Campaign.goalCents",
    "Campaign.id",
    "Campaign.imageSrcset",
    "Campaign.imageUrl",
    "Campaign.owner",
    "Campaign.heldCents",
    "Campaign.paidOutCents",
    "Campaign.payouts",
    "Campaign.recentDonations",
    "Campaign.refundedCents",
    # Reads the caller, so it marks its answer as never to be kept
    # (Context.answer_is_personal); tests/api/test_reviews.py.
    "Campaign.reviewNote",
    "Campaign.status",
    "Campaign.suspensionNote",
    "Campaign.title",
    "Campaign.totals",
    "Campaign.updates",
    "CampaignUpdate.body",
    "CampaignUpdate.createdAt",
    "CampaignUpdate.id",
    "CampaignUpdate.title",
    "CampaignUpdateConnection.edges",
    "CampaignUpdateConnection.pageInfo",
    "CampaignUpdateEdge.cursor",
    "CampaignUpdateEdge.node",
    "Payout.amountCents",
    "Payout.currency",
    "Payout.id",
    "Payout.paidAt",
    "Payout.recipient",
    "Payout.reference",
    "CampaignConnection.edges",
    "CampaignConnection.pageInfo",
    "CampaignEdge.cursor",
    "CampaignEdge.node",
    "CampaignTotals.campaignId",
    "CampaignTotals.pledgeCount",
    "CampaignTotals.raisedCents",
    "CampaignTotals.updatedAt",
    "PageInfo.endCursor",
    "PageInfo.hasNextPage",
    "PublicDonation.amountCents",
    "PublicDonation.createdAt",
    "PublicDonation.currency",
    "PublicDonation.donorName",
    "PublicDonation.message",
    "PublicProfile.id",
    "PublicProfile.name",
}

# Asks for every reviewed field.
EVERYTHING_PUBLIC = """
query Everything($id: ID!) {
  version
  campaignTotals(campaignId: $id) { campaignId raisedCents pledgeCount updatedAt }
  campaign(id: $id) {
    id title description category goalCents currency status endsAt createdAt
    acceptingPledges owner { id name }
    totals { campaignId raisedCents pledgeCount updatedAt }
    recentDonations(first: 5) { donorName amountCents currency message createdAt }
  }
  campaigns(first: 5) {
    edges { cursor node { id title } } pageInfo { endCursor hasNextPage }
  }
}"""
CAMPAIGN_STATUS = "query($id: ID!) { campaign(id: $id) { id status acceptingPledges } }"
SET_STATUS = """mutation($id: ID!, $status: CampaignStatus!) {
  setCampaignStatus(id: $id, status: $status) { id status }
}"""
ME = "{ me { id email } }"


def cache_count(result: str) -> float:
    value = REGISTRY.get_sample_value(
        "careforall_graphql_response_cache_total", {"result": result}
    )
    return value or 0.0


class Counts:
    """Cache hits and misses since it was made."""

    def __init__(self) -> None:
        self.hits, self.misses = cache_count("hit"), cache_count("miss")

    def since(self) -> tuple[float, float]:
        return cache_count("hit") - self.hits, cache_count("miss") - self.misses


@pytest.fixture
def long_lived_gql(app_factory: Callable[..., TestClient]) -> GQL:
    """Answers kept for an hour: only invalidation can make them fresh."""
    return GQL(app_factory(response_cache_seconds=3600))


def paid(gql: GQL, token: str, campaign_id: str, amount: int) -> None:
    pledge = f.pledge(gql, token, campaign_id, amount)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, token)


def test_a_repeated_public_query_is_answered_from_the_cache(
    gql: GQL, db: Database
) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    # Delivering the campaign's events commits, and a commit ends kept answers.
    wait_until(lambda: outbox_drained(db))
    counts = Counts()

    first = gql.ok(EVERYTHING_PUBLIC, {"id": campaign_id})
    again = [gql.ok(EVERYTHING_PUBLIC, {"id": campaign_id}) for _ in range(3)]

    assert again == [first] * 3
    assert counts.since() == (3, 1)
    assert first["campaign"]["title"].startswith("Surgery for")


def test_captured_money_shows_in_answers_that_were_kept(long_lived_gql: GQL) -> None:
    gql = long_lived_gql
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    assert f.totals(gql, campaign_id) == (0, 0)
    assert f.totals(gql, campaign_id) == (0, 0)  # now kept
    before = gql.ok(EVERYTHING_PUBLIC, {"id": campaign_id})

    paid(gql, f.anonymous(gql), campaign_id, 2500)

    # The outbox updates the totals after the payment's commit: polled, but
    # kept answers could never show it (they would live for an hour).
    wait_until(lambda: f.totals(gql, campaign_id) == (2500, 1))
    after = gql.ok(EVERYTHING_PUBLIC, {"id": campaign_id})
    assert after["campaign"]["totals"]["raisedCents"] == 2500
    assert after["campaign"]["recentDonations"][0]["amountCents"] == 2500
    assert before["campaign"]["recentDonations"] == []


def test_a_change_is_seen_by_the_next_query_after_its_answer(
    long_lived_gql: GQL,
) -> None:
    gql = long_lived_gql
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    for _ in range(2):
        seen = gql.ok(CAMPAIGN_STATUS, {"id": campaign_id})["campaign"]
        assert (seen["status"], seen["acceptingPledges"]) == ("ACTIVE", True)

    gql.ok(SET_STATUS, {"id": campaign_id, "status": "PAUSED"}, f.admin(gql).token)

    seen = gql.ok(CAMPAIGN_STATUS, {"id": campaign_id})["campaign"]
    assert (seen["status"], seen["acceptingPledges"]) == ("PAUSED", False)


@pytest.mark.sqlite_only  # PostgreSQL: each commit's notification ends them
def test_new_pledges_leave_kept_answers_in_place(
    long_lived_gql: GQL, db: Database
) -> None:
    gql = long_lived_gql
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    donor = f.anonymous(gql)
    wait_until(lambda: outbox_drained(db))
    before = gql.ok(EVERYTHING_PUBLIC, {"id": campaign_id})
    counts = Counts()

    for amount in (1000, 2000, 3000):
        f.pledge(gql, donor, campaign_id, amount)
    wait_until(lambda: outbox_drained(db))  # delivered: PledgeCreated events

    # PENDING pledges show in no public answer: it is still the kept one.
    assert gql.ok(EVERYTHING_PUBLIC, {"id": campaign_id}) == before
    assert counts.since() == (1, 0)


def test_answers_that_depend_on_the_caller_are_never_shared(gql: GQL) -> None:
    alice, bob = f.register(gql), f.register(gql)
    counts = Counts()

    assert gql.ok(ME, token=alice.token)["me"]["email"] == alice.email
    assert gql.ok(ME, token=bob.token)["me"]["email"] == bob.email
    assert gql.ok(ME)["me"] is None
    # A public field beside a private one: the whole answer is private.
    mixed = "{ version me { email } }"
    assert gql.ok(mixed, token=alice.token)["me"]["email"] == alice.email
    assert gql.ok(mixed, token=bob.token)["me"]["email"] == bob.email
    pledge = f.pledge(gql, alice.token, f.campaign(gql, bob.token)["id"])
    query = "query($id: ID!) { pledge(id: $id) { id amountCents } }"
    assert gql.ok(query, {"id": pledge["id"]}, alice.token)["pledge"]["id"]
    assert gql.code(query, {"id": pledge["id"]}, bob.token) == "NOT_FOUND"

    assert counts.since() == (0, 0)


def test_answers_with_errors_are_not_kept(gql: GQL) -> None:
    counts = Counts()
    for _ in range(2):
        assert gql.code("{ campaigns(first: 100000) { edges { cursor } } }") == (
            "BAD_USER_INPUT"
        )
    assert counts.since() == (0, 2)


def test_public_answers_are_the_same_whoever_asks(
    app_factory: Callable[..., TestClient],
) -> None:
    """With the cache off: the schema itself answers everyone alike, which is
    what lets the cache share one answer."""
    gql = GQL(app_factory(response_cache_seconds=0))
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    guest = f.anonymous(gql)
    paid(gql, guest, campaign_id, 1500)
    wait_until(lambda: f.totals(gql, campaign_id) == (1500, 1))
    counts = Counts()

    callers = [None, guest, organiser.token, f.admin(gql).token, "not-a-token"]
    answers = [gql(EVERYTHING_PUBLIC, {"id": campaign_id}, token) for token in callers]

    assert "errors" not in answers[0]
    assert answers == [answers[0]] * len(callers)
    assert counts.since() == (0, 0)


def test_the_fields_of_public_answers_are_the_reviewed_ones() -> None:
    graphql_schema = schema._schema
    query_type = graphql_schema.query_type
    assert query_type is not None
    found: set[str] = set()
    pending = []
    for name in PUBLIC_ROOT_FIELDS:
        found.add(f"Query.{name}")
        pending.append(get_named_type(query_type.fields[name].type))
    visited: set[str] = set()
    while pending:
        named = pending.pop()
        if named.name in visited or not isinstance(named, GraphQLObjectType):
            continue
        visited.add(named.name)
        for field_name, field in named.fields.items():
            found.add(f"{named.name}.{field_name}")
            pending.append(get_named_type(field.type))
    assert found == REVIEWED_PUBLIC_FIELDS, (
        "A public answer can now hold other fields. The response cache gives "
        "one answer to everyone: make sure a new field does not depend on the "
        "caller, then list it in REVIEWED_PUBLIC_FIELDS."
    )


def test_a_cache_of_zero_seconds_keeps_nothing(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(response_cache_seconds=0))
    counts = Counts()
    for _ in range(3):
        gql.ok("{ version }")
    assert counts.since() == (0, 0)


# --- the cache itself --------------------------------------------------------


def body(query: str, **request: Any) -> bytes:
    return json.dumps({"query": query, **request}).encode()


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        (body("{ version }"), PublicQuery(None)),
        (
            body("query Totals { campaignTotals(campaignId: 1) { raisedCents } }"),
            PublicQuery("Totals"),
        ),
        (
            body("query A { version } query B { me { id } }", operationName="A"),
            PublicQuery("A"),
        ),
        (body("query A { version } query B { me { id } }", operationName="B"), None),
        (body("query A { version } query B { version }"), None),  # which one?
        (body("{ me { id } }"), None),
        (body("{ version me { id } }"), None),
        (body("{ ...F } fragment F on Query { version }"), None),
        (body("mutation { startAnonymousSession { token } }"), None),
        (body("subscription { campaignTotals(campaignId: 1) { raisedCents } }"), None),
        (body("{ version"), None),
        (b"not json", None),
        (b"[]", None),
        (body("{ version }", operationName=3), None),
    ],
)
def test_which_requests_are_public_queries(
    request_body: bytes, expected: PublicQuery | None
) -> None:
    assert public_query(request_body, max_tokens=2000) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_lives_until_its_data_version_moves_or_it_expires() -> None:
    clock = Clock()
    cache = ResponseCache(max_age=1.0, clock=clock)
    query = PublicQuery(None)
    cache.put(b"k", b"answer", query, data_version=7, read_at=clock.now)

    assert cache.get(b"k", 7) is not None
    assert cache.get(b"k", 8) is None  # a commit since: gone for good
    assert cache.get(b"k", 7) is None

    # Its age counts from the read it was made from, not from when it was kept.
    read_at = clock.now
    clock.now += 0.5
    cache.put(b"k", b"answer", query, data_version=8, read_at=read_at)
    clock.now += 0.49
    kept = cache.get(b"k", 8)
    assert kept is not None and kept.body == b"answer"
    clock.now += 0.02
    assert cache.get(b"k", 8) is None
    assert cache.size_bytes == 0


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    clock = Clock()
    cache = ResponseCache(max_age=60, max_entries=3, max_bytes=1000, clock=clock)
    query = PublicQuery(None)

    def put(key: bytes, body: bytes = b"x") -> None:
        cache.put(key, body, query, data_version=1, read_at=clock.now)

    for key in (b"a", b"b", b"c"):
        put(key)
    assert cache.get(b"a", 1) is not None  # a is now the most recent
    put(b"d")
    assert len(cache) == 3
    assert cache.get(b"b", 1) is None  # the least recently used left
    assert [cache.get(k, 1) is not None for k in (b"a", b"c", b"d")] == [True] * 3

    put(b"big", b"x" * (MAX_BODY_BYTES + 1))
    assert cache.get(b"big", 1) is None
    padded = b"k" * (MAX_REQUEST_BYTES + 1)
    assert not cache.may_keep(padded)
    assert cache.may_keep(b'{"query": "{ campaigns { edges { cursor } } }"}')
    assert not cache.may_keep(b'{"query": "mutation { startAnonymousSession }"}')
    put(padded)
    assert cache.get(padded, 1) is None

    put(b"e", b"y" * 600)
    put(b"f", b"z" * 600)  # over 1,000 bytes together: the older one leaves
    assert cache.get(b"e", 1) is None and cache.get(b"f", 1) is not None
    assert cache.size_bytes <= 1000


def test_a_request_padded_to_fill_memory_is_answered_but_not_kept(gql: GQL) -> None:
    counts = Counts()
    padding = {"unused": "x" * MAX_REQUEST_BYTES}
    for _ in range(2):
        assert gql.ok("{ version }", padding)["version"]
    assert counts.since() == (0, 0)


# --- misses at the same moment share one execution --------------------------


def test_requests_that_miss_together_share_the_first_ones_answer() -> None:
    async def scene() -> None:
        misses = Misses()
        answer = CachedAnswer(
            body=b"{}", query=PublicQuery(None), data_version=5, expires=1.0
        )
        assert await misses.follow(b"k", 5) is None  # no one is running it
        release = asyncio.Event()

        async def leader() -> None:
            with misses.lead(b"k", 5) as done:
                await release.wait()  # executing
                done(answer)

        running = asyncio.create_task(leader())
        await asyncio.sleep(0)  # one loop step: the leader holds the key
        followers = [asyncio.create_task(misses.follow(b"k", 5)) for _ in range(3)]
        other_version = await misses.follow(b"k", 6)  # after another commit: alone
        await asyncio.sleep(0)  # one loop step: the followers wait on the leader
        assert not any(f.done() for f in followers)
        release.set()
        await running
        assert [await f for f in followers] == [answer] * 3
        assert other_version is None
        assert len(misses) == 0

    asyncio.run(scene())


def test_followers_run_it_themselves_when_the_first_one_fails() -> None:
    async def scene() -> None:
        misses = Misses()

        async def leader() -> None:
            with misses.lead(b"k", 5):
                await asyncio.sleep(0)  # one loop step: the follower joins
                raise RuntimeError("client went away")

        running = asyncio.create_task(leader())
        await asyncio.sleep(0)  # one loop step: the leader holds the key
        follower = asyncio.create_task(misses.follow(b"k", 5))
        with pytest.raises(RuntimeError):
            await running
        assert await follower is None
        assert len(misses) == 0

    asyncio.run(scene())

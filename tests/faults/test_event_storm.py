"""A storm of provider events at a real server: hundreds of pledges across
several campaigns, every kind of event, shuffled, a third sent twice, from
many senders at once, while subscribers watch each campaign's totals.

Each pledge gets a set of events whose outcome the lenient machine makes
independent of their order (checked here by trying every order), so its
final state is known before the storm; its history must still be exactly the
machine's replay of the order the server applied them in. Totals end equal to
the CAPTURED pledges and no subscriber ever sees one below zero. The figures
are printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest

from careforall.payments.signature import sign
from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.storm import (
    APPLIED_IN_ORDER_SQL,
    APPLIED_SQL,
    HISTORY_SQL,
    OUTBOX_SQL,
    Answer,
    Delivery,
    check_answers,
    check_replayed,
    make_delivery,
    outcomes,
    replay,
    with_repeats,
)
from tests.helpers.subscriptions import pair, totals_feed
from tests.helpers.waiting import wait_until
from tests.helpers.workers import serve_processes

pytestmark = pytest.mark.server

SEED = int(os.environ.get("CAREFORALL_STORM_SEED", "20240611"))
PLEDGES = 300
CAMPAIGNS = 5
SENDERS = 16
SECRET = "storm-webhook-secret-" + "s" * 32

# Event sets whose final state no order changes under the lenient machine:
# with no `failed`, the furthest state on the path wins; `failed` beside
# nothing but `authorized` always ends FAILED. (`failed` beside `captured`
# or `refunded` races, and is left to tests/system/test_storm.py.)
RECIPES: tuple[tuple[str, ...], ...] = (
    ("authorized",),
    ("authorized", "captured"),
    ("captured",),
    ("captured", "captured"),
    ("authorized", "captured", "refunded"),
    ("captured", "refunded"),
    ("refunded",),
    ("failed",),
    ("authorized", "failed"),
    ("authorized", "authorized", "failed"),
)


class Subscribers:
    """One campaignTotals subscription per campaign, in a thread of its own,
    keeping every totals message each one gets."""

    def __init__(self, server: Server, campaign_ids: list[str]) -> None:
        self.server = server
        self.seen: dict[str, list[tuple[int, int]]] = {c: [] for c in campaign_ids}
        self.errors: list[BaseException] = []
        self.subscribed = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self._run()), daemon=True
        )

    def __enter__(self) -> Subscribers:
        self.thread.start()
        assert self.subscribed.wait(10), "the subscriptions did not start"
        assert not self.errors, self.errors
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "a subscriber hung"

    def latest(self) -> dict[str, tuple[int, int]]:
        return {c: seen[-1] for c, seen in self.seen.items() if seen}

    async def _run(self) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                feeds = {
                    c: await stack.enter_async_context(totals_feed(self.server, c))
                    for c in self.seen
                }
                for campaign_id, feed in feeds.items():  # current totals first
                    self.seen[campaign_id].append(pair(await feed.totals()))
                self.subscribed.set()
                await asyncio.gather(
                    *(self._follow(c, feed) for c, feed in feeds.items())
                )
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)
            self.subscribed.set()

    async def _follow(self, campaign_id: str, feed: Any) -> None:
        while not self.stop.is_set():
            try:
                totals = await feed.totals(timeout=0.1)
            except TimeoutError:
                continue
            self.seen[campaign_id].append(pair(totals))


T = TypeVar("T")
U = TypeVar("U")


def on_threads(
    servers: Sequence[Server],
    count: int,
    work: Callable[[httpx.Client, T], U],
    items: list[T],
) -> list[U]:
    """`work(client, item)` for every item, from `count` threads at once, each
    with a connection of its own (thread k to server k mod n, as a balancer
    would spread them); the answers in the items' order."""

    def run(k: int) -> list[tuple[int, U]]:
        url = servers[k % len(servers)].base_url
        with httpx.Client(base_url=url, timeout=10) as client:
            return [(i, work(client, item)) for i, item in numbered[k::count]]

    numbered = list(enumerate(items))
    with ThreadPoolExecutor(count) as pool:
        shares = pool.map(run, range(count))
    return [answer for _, answer in sorted(itertools.chain(*shares), key=first)]


def first(pair: tuple[int, Any]) -> int:
    return pair[0]


def make_pledges(
    servers: Sequence[Server], api: ServerGQL, rng: random.Random
) -> tuple[list[str], list[dict[str, Any]]]:
    organiser = f.register(api)
    campaigns = [f.campaign(api, organiser.token)["id"] for _ in range(CAMPAIGNS)]
    donors = [f.anonymous(api) for _ in range(8)]
    wanted = [
        (rng.choice(donors), rng.choice(campaigns), rng.randint(100, 90_000))
        for _ in range(PLEDGES)
    ]

    def create(client: httpx.Client, args: tuple[str, str, int]) -> dict[str, Any]:
        donor, campaign_id, amount = args
        return f.pledge(ServerGQL(client), donor, campaign_id, amount=amount)

    return campaigns, on_threads(servers, 8, create, wanted)


def deliver(client: httpx.Client, d: Delivery) -> Answer:
    """Post a provider event, signed with the server's webhook secret."""
    response = client.post(
        f.WEBHOOK_URL,
        content=d.body,
        headers={
            "Content-Type": "application/json",
            "CareForAll-Signature": sign(SECRET, d.body),
        },
    )
    return d.event_id, response.status_code, response.json()


@pytest.mark.processes(1, 2, sqlite_workers=True)
def test_a_storm_of_provider_events_lands_every_pledge_where_its_events_lead(
    make_server: Callable[..., Server], database_kind: str, processes: int
) -> None:
    """With two processes (two servers on PostgreSQL, `--workers 2` on
    SQLite), the senders and the pledges are spread over both and the
    subscribers watch the second (on SQLite, either)."""
    rng = random.Random(SEED)
    for recipe in RECIPES:
        events = [(f"e{i}", kind) for i, kind in enumerate(recipe)]
        assert len(outcomes(events)) == 1, recipe  # no order changes the end
    servers = serve_processes(
        make_server,
        database_kind,
        processes,
        CAREFORALL_AUTO_CAPTURE="false",
        CAREFORALL_WEBHOOK_SECRET=SECRET,
    )
    server = servers[0]
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = ServerGQL(http)
        began = time.monotonic()
        campaigns, pledges = make_pledges(servers, api, rng)
        made = time.monotonic() - began
        expected: dict[str, str] = {}
        events: list[Delivery] = []
        for pledge in pledges:
            recipe = rng.choice(RECIPES)
            expected[pledge["id"]] = replay(
                (f"e{i}", kind) for i, kind in enumerate(recipe)
            )[0]
            events += [make_delivery(pledge, kind) for kind in recipe]
        deliveries = with_repeats(rng, events)

        with Subscribers(servers[-1], campaigns) as subscribers:
            started = time.monotonic()
            answers = on_threads(servers, SENDERS, deliver, deliveries)
            posted = time.monotonic()
            wait_until(server.settled, timeout=15, interval=0.05)
            drained = time.monotonic()
            final = {c: f.totals(api, c) for c in campaigns}
            # The last push each subscriber got is the final totals.
            wait_until(lambda: subscribers.latest() == final, timeout=5)
        assert not subscribers.errors, subscribers.errors

    duplicates = check_answers(answers, deliveries)
    statuses = dict(server.query("SELECT id, status FROM pledges"))
    in_order = not server.is_postgres
    check_replayed(
        server.query(APPLIED_IN_ORDER_SQL if in_order else APPLIED_SQL),
        statuses,
        server.query(HISTORY_SQL),
        server.query(OUTBOX_SQL),
        deliveries,
        in_order=in_order,
    )
    # Every pledge where its events lead, whatever order they landed in.
    assert {pid: statuses[pid] for pid in expected} == expected

    # Totals: each campaign's CAPTURED pledges, through the API and the ledger.
    for campaign_id in campaigns:
        captured = [
            p["amountCents"]
            for p in pledges
            if p["campaign"]["id"] == campaign_id and expected[p["id"]] == "CAPTURED"
        ]
        assert final[campaign_id] == (sum(captured), len(captured)), campaign_id
    assert sum(n for _, n in final.values()) > 0
    # No subscriber ever saw a total below zero.
    pushes = sum(len(seen) for seen in subscribers.seen.values())
    lowest = min(min(r for r, _ in seen) for seen in subscribers.seen.values())
    fewest = min(min(n for _, n in seen) for seen in subscribers.seen.values())
    assert pushes > len(campaigns), "the subscribers saw no change at all"
    assert lowest >= 0 and fewest >= 0
    for each in servers:
        assert each.logged_errors() == []

    kinds = Counter(d.kind for d in events)
    ends = Counter(expected.values())
    print(
        f"\nevent storm: {database_kind}, {processes} process(es); "
        f"seed={SEED} pledges={PLEDGES} campaigns={CAMPAIGNS} "
        f"senders={SENDERS} (pledges made in {made:.1f}s); events {len(events)} "
        f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}), "
        f"deliveries {len(deliveries)} of which {duplicates} duplicates "
        f"(answered as such); applied once each: {len(events)}; "
        f"posted in {posted - started:.2f}s, settled {drained - posted:.2f}s later; "
        f"final states {dict(sorted(ends.items()))}; "
        f"{pushes} totals pushes seen by {CAMPAIGNS} subscribers, lowest "
        f"raised {lowest}, lowest count {fewest}"
    )

"""Two processes on one database, as behind a load balancer. On PostgreSQL,
two `careforall serve` processes: a pledge made on one, its webhook
delivered to the other, and the subscriber on the first hears the new total.
On SQLite, the two processes of one `careforall serve --workers 2`: a
donation through one reaches the subscribers and the kept answers of both.
Then, on either, a burst of donations through both: every outbox event is
delivered once, by one process or the other, the totals are exact and each
receipt is mailed once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, ExitStack
from typing import Any

import httpx
import pytest

from careforall.domain.events import EVENT_TYPES
from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.smtp import MailServer, mail_server
from tests.helpers.subscriptions import (
    TotalsFeed,
    donation_pushed,
    gql_async,
    pair,
    totals_feed,
)
from tests.helpers.waiting import wait_until
from tests.helpers.workers import Worker, each_worker, metric_of, start_workers

__all__ = ["mail_server"]  # the fixture, used by name

pytestmark = [pytest.mark.server]


def webhooks_to(server: Server) -> dict[str, str]:
    return {"CAREFORALL_PROVIDER_WEBHOOK_URL": f"{server.base_url}/webhooks/payments"}


# Answers to public queries kept for an hour, so what a process answers
# follows the other's commits only if something invalidates its entries: the
# notifications, or its own dispatcher's commits.
LONG_CACHE = {"CAREFORALL_RESPONSE_CACHE_SECONDS": "3600"}


def two_servers(make_server: Callable[..., Server]) -> tuple[Server, Server]:
    """`one` and `two` share the database; the provider posts every webhook to
    `two`, whichever process took the payment."""
    two = make_server(start=False, **LONG_CACHE)
    one = make_server(start=False, **webhooks_to(two), **LONG_CACHE)
    two.env.update(webhooks_to(two))
    two.start()
    one.start()
    return one, two


def metric(server: Server, name: str, labels: str = "") -> float:
    """The sum of a counter's samples whose labels contain `labels`."""
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        return metric_of(http, name, labels)


@pytest.mark.postgres_only
def test_webhook_on_the_other_process_reaches_this_ones_subscriber(
    make_server: Callable[..., Server],
) -> None:
    one, two = two_servers(make_server)
    with httpx.Client(base_url=one.base_url, timeout=10) as http:
        api = ServerGQL(http)
        organiser = f.register(api)
        campaign_id = f.campaign(api, organiser.token)["id"]
        guest = f.anonymous(api)

    current, pushed, status, latency = donation_pushed(
        one, one, campaign_id, guest, 4200
    )
    print(f"push on process one {latency * 1000:.0f} ms after the answer")

    assert pair(current) == (0, 0)
    assert status in ("AUTHORIZED", "CAPTURED")
    assert pair(pushed) == (4200, 1)
    # The provider's webhooks (authorized, then captured) went to process two
    # only, and process two applied them.
    wait_until(
        lambda: (
            metric(two, "careforall_webhooks_received_total", 'outcome="processed"')
            >= 2
        )
    )
    assert metric(one, "careforall_webhooks_received_total") == 0
    assert one.logged_errors() == [] and two.logged_errors() == []


@pytest.mark.sqlite_only
def test_a_donation_through_one_worker_reaches_the_other_ones_subscribers_and_answers(
    make_server: Callable[..., Server],
) -> None:
    server = start_workers(make_server, 2, **LONG_CACHE)
    with each_worker(server) as workers:
        api = ServerGQL(workers[0].http)
        organiser = f.register(api)
        campaign_id = f.campaign(api, organiser.token)["id"]
        guest = f.anonymous(api)
        # The other process keeps its answer (for an hour, unless told).
        other = ServerGQL(workers[1].http)
        assert f.totals(other, campaign_id) == (0, 0)

        pushed, latency, where = asyncio.run(
            donate_while_both_watch(server, workers, campaign_id, guest)
        )
        print(
            f"subscribers per process {where}; last push {latency * 1000:.0f} ms "
            "after the payment's answer"
        )
        assert all(count > 0 for count in where.values()), where
        assert pushed and all(p == (4200, 1) for p in pushed)
        # The other process's kept answer followed the commit.
        wait_until(lambda: f.totals(other, campaign_id) == (4200, 1), timeout=5)
        for worker in workers:
            worker.check()
    assert server.logged_errors() == []


async def donate_while_both_watch(
    server: Server, workers: list[Worker], campaign_id: str, guest: str
) -> tuple[list[tuple[int, int]], float, dict[int, float]]:
    """Subscribe until each process has a subscriber, then donate through
    the first process; returns what each subscriber was pushed, when the last
    push came, and the subscribers each process had."""
    async with AsyncExitStack() as stack:
        feeds: list[TotalsFeed] = []
        where: dict[int, float] = {}
        while len(feeds) < 16 and not all(where.get(w.pid) for w in workers):
            feed = await stack.enter_async_context(totals_feed(server, campaign_id))
            assert pair(await feed.totals()) == (0, 0)
            feeds.append(feed)
            where = {
                w.pid: await asyncio.to_thread(
                    w.metric, "careforall_subscriptions_open"
                )
                for w in workers
            }
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            variables = {
                "input": {
                    "campaignId": campaign_id,
                    "amountCents": 4200,
                    "currency": "USD",
                    "idempotencyKey": f.unique("key"),
                }
            }
            made = await gql_async(http, f.CREATE_PLEDGE, variables, guest)
            pledge_id = made["createPledge"]["id"]
            await gql_async(
                http, f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, guest
            )
            answered = time.monotonic()
        pushed = [await pushed_until(feed, (4200, 1)) for feed in feeds]
        return pushed, time.monotonic() - answered, where


async def pushed_until(feed: TotalsFeed, wanted: tuple[int, int]) -> tuple[int, int]:
    """The totals pushed to `feed` until `wanted` (or the last before a timeout)."""
    seen = (-1, -1)
    while seen != wanted:
        seen = pair(await feed.totals(timeout=10))
    return seen


@pytest.fixture
def burst_servers(
    make_server: Callable[..., Server], database_kind: str, mail_server: MailServer
) -> Iterator[list[Server]]:
    """PostgreSQL: two servers; SQLite: one serving with two workers. Both
    mail receipts to `mail_server`."""
    mails = {
        "CAREFORALL_SMTP_URL": f"smtp://127.0.0.1:{mail_server.port}",
        "CAREFORALL_MAIL_FROM": "Hope <receipts@hope.example>",
    }
    if database_kind == "postgresql":
        two = make_server(start=False, **LONG_CACHE, **mails)
        one = make_server(start=False, **webhooks_to(two), **LONG_CACHE, **mails)
        two.env.update(webhooks_to(two))
        two.start()
        one.start()
        yield [one, two]
    else:
        yield [start_workers(make_server, 2, **LONG_CACHE, **mails)]


def test_a_burst_through_both_processes_counts_every_donation_once(
    burst_servers: list[Server], mail_server: MailServer
) -> None:
    """Sixty donations, each pledged on one process and paid on the other
    (PostgreSQL), or spread over the workers as connections land (SQLite)."""
    servers = burst_servers
    one = servers[0]
    with ExitStack() as stack:
        clients = [
            stack.enter_context(httpx.Client(base_url=s.base_url, timeout=30))
            for s in (servers * 2)[:2]
        ]
        made, converged = burst(clients)
    events = one.scalar("SELECT count(*) FROM outbox_events")
    record_only = ", ".join(
        f"'{name}'" for name, kind in EVENT_TYPES.items() if kind.record_only
    )
    to_deliver = one.scalar(
        f"SELECT count(*) FROM outbox_events WHERE name NOT IN ({record_only})"
    )
    delivered = delivered_by_process(servers)
    print(
        f"{len(made)} donations through two processes: converged in "
        f"{converged:.1f} s; outbox events {events}, delivered per process "
        f"{delivered}"
    )
    assert one.scalar("SELECT count(*) FROM outbox_events WHERE status <> 'done'") == 0
    # Each event delivered once, by one process (SKIP LOCKED; SQLite's leases).
    # (Record-only events, each new pledge's among them, are written delivered.)
    assert len(delivered) == 2 and sum(delivered.values()) == to_deliver
    captured = one.query("SELECT count(*) FROM pledges WHERE status = 'CAPTURED'")[0][0]
    assert captured == len(made)
    ledger = one.scalar("SELECT sum(counted_cents) FROM totals_ledger")
    assert ledger == sum(amount for _, amount in made)
    # One receipt per donation, each mailed once.
    wait_until(lambda: len(receipts_in(mail_server)) >= len(made), timeout=30)
    time.sleep(1)  # a second sending would come by now
    receipts = receipts_in(mail_server)
    assert len(receipts) == len(made)
    assert len({m["To"] for m in receipts}) == len(made)
    for server in servers:
        assert server.logged_errors() == []


def receipts_in(mail_server: MailServer) -> list[Any]:
    return [m for m in mail_server.messages if "receipt" in m["Subject"].lower()]


def burst(
    clients: list[httpx.Client], donations: int = 60
) -> tuple[list[tuple[str, int]], float]:
    """Donations by guests with a receipt address; waits until the second
    client's (kept) answers show the totals. Returns each donation's campaign
    and amount, and the seconds until the totals converged."""
    apis = [ServerGQL(c) for c in clients]
    organiser = f.register(apis[0])
    campaigns = [f.campaign(apis[0], organiser.token)["id"] for _ in range(3)]
    for campaign_id in campaigns:
        assert f.totals(apis[1], campaign_id) == (0, 0)  # kept for an hour

    def donate(n: int) -> tuple[str, int]:
        api = apis[n % 2]  # alternate processes, like a round-robin balancer
        guest = f.anonymous(api)
        campaign_id = campaigns[n % len(campaigns)]
        amount = 100 + n
        email = f"{f.unique('guest')}@example.org"
        pledge = f.pledge(api, guest, campaign_id, amount=amount, donorEmail=email)
        # Paid on the other process than the one that took the pledge.
        other = apis[(n + 1) % 2]
        status = other.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, guest)
        assert status["authorizePayment"]["status"] in ("AUTHORIZED", "CAPTURED")
        return campaign_id, amount

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as pool:
        made = list(pool.map(donate, range(donations)))
    expected = dict.fromkeys(campaigns, (0, 0))
    for campaign_id, amount in made:
        raised, count = expected[campaign_id]
        expected[campaign_id] = (raised + amount, count + 1)
    for campaign_id in campaigns:
        # Asked of the second client, whose process's kept answers must follow
        # the totals whichever process's dispatcher wrote them.
        wait_until(
            lambda c=campaign_id: f.totals(apis[1], c) == expected[c], timeout=20
        )
    converged = time.monotonic() - began
    return made, converged


def delivered_by_process(servers: list[Server]) -> dict[int, float]:
    """Outbox events each process delivered, by process id."""
    wait_until(servers[0].settled, timeout=20)
    name = "careforall_outbox_events_delivered_total"
    if len(servers) == 2:
        return {s.pid: metric(s, name) for s in servers}
    with each_worker(servers[0]) as workers:
        return {w.pid: w.metric(name) for w in workers}


def test_serve_with_two_workers_shares_the_work(
    make_server: Callable[..., Server],
) -> None:
    server = start_workers(make_server, 2)
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = ServerGQL(http)
        # Both workers made sure the admin exists at once: one admin, signed in.
        f.admin(api)
        organiser = f.register(api)
        campaign_id = f.campaign(api, organiser.token)["id"]
        for amount in (1500, 2500, 3500):
            guest = f.anonymous(api)
            pledge_id = f.pledge(api, guest, campaign_id, amount=amount)["id"]
            api.ok(f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, guest)
        wait_until(lambda: f.totals(api, campaign_id) == (7500, 3), timeout=20)
    admins = server.scalar("SELECT count(*) FROM users WHERE role = 'ADMIN'")
    assert admins == 1
    assert server.logged_errors() == []


WRONG_LOGINS = 6  # CAREFORALL_RATE_LIMIT_AUTH_PER_EMAIL's count below


def fresh_login(server: Server, email: str) -> str:
    """A wrong password sent on a connection of its own (either worker may
    accept it); the error code answered."""
    body = httpx.post(
        f"{server.base_url}/graphql",
        json={"query": f.LOGIN, "variables": {"email": email, "password": "wrong"}},
        timeout=30,
    ).json()
    return str(body["errors"][0]["extensions"]["code"])


def test_two_workers_refuse_wrong_passwords_at_the_count_of_one_process(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(
        start=False,
        serve_args=("--workers", "2"),
        CAREFORALL_RATE_LIMITS="on",
        CAREFORALL_RATE_LIMIT_AUTH_PER_EMAIL=f"{WRONG_LOGINS}/3600",
        CAREFORALL_RATE_LIMIT_AUTH_PER_ADDRESS="1000/60",
    )
    # Each worker imports and builds the app by itself: slow on a busy machine.
    server.start(timeout=60)
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        victim = f.register(ServerGQL(http))

    codes = [fresh_login(server, victim.email) for _ in range(WRONG_LOGINS + 1)]

    # Each worker answers /metrics with its own counts: one that answered
    # some of the wrong passwords, not all, shows that both served.
    seen = {
        metric(server, "careforall_graphql_errors_total", 'code="UNAUTHENTICATED"')
        for _ in range(10)
    }
    print(f"wrong passwords answered per worker: {sorted(seen)}")
    assert codes == ["UNAUTHENTICATED"] * WRONG_LOGINS + ["RATE_LIMITED"]
    assert any(0 < count < WRONG_LOGINS for count in seen)
    assert server.logged_errors() == []

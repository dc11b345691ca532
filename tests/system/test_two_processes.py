"""Two `careforall serve` processes on one PostgreSQL database, as behind a
load balancer: a pledge made on one, its webhook delivered to the other, and
the subscriber on the first hears the new total. Then a burst of donations
through both: every outbox event is delivered once, by one process or the
other, and the totals are exact."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.subscriptions import donation_pushed, pair
from tests.helpers.waiting import wait_until

# On SQLite one process serves one file (docs/operations.md, "Scaling out").
pytestmark = [pytest.mark.server, pytest.mark.postgres_only]


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
    text = httpx.get(f"{server.base_url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
        if match and labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


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


def test_a_burst_through_both_processes_counts_every_donation_once(
    make_server: Callable[..., Server],
) -> None:
    one, two = two_servers(make_server)
    clients = [httpx.Client(base_url=s.base_url, timeout=30) for s in (one, two)]
    apis = [ServerGQL(c) for c in clients]
    organiser = f.register(apis[0])
    campaigns = [f.campaign(apis[0], organiser.token)["id"] for _ in range(3)]
    donations = 60

    def donate(n: int) -> tuple[str, int]:
        api = apis[n % 2]  # alternate processes, like a round-robin balancer
        guest = f.anonymous(api)
        campaign_id = campaigns[n % len(campaigns)]
        amount = 100 + n
        pledge_id: str = f.pledge(api, guest, campaign_id, amount=amount)["id"]
        # Paid on the other process than the one that took the pledge.
        other = apis[(n + 1) % 2]
        status = other.ok(f.AUTHORIZE, {"id": pledge_id, "pm": "pm_card_ok"}, guest)
        assert status["authorizePayment"]["status"] in ("AUTHORIZED", "CAPTURED")
        return campaign_id, amount

    began = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            made = list(pool.map(donate, range(donations)))
        expected = dict.fromkeys(campaigns, (0, 0))
        for campaign_id, amount in made:
            raised, count = expected[campaign_id]
            expected[campaign_id] = (raised + amount, count + 1)
        for campaign_id in campaigns:
            # Asked of process two, whose kept answers must follow the totals
            # whichever process's dispatcher wrote them.
            wait_until(
                lambda c=campaign_id: f.totals(apis[1], c) == expected[c], timeout=20
            )
        converged = time.monotonic() - began
        wait_until(one.settled, timeout=20)
    finally:
        for client in clients:
            client.close()

    delivered = {
        s.port: metric(s, "careforall_outbox_events_delivered_total")
        for s in (one, two)
    }
    events = one.scalar("SELECT count(*) FROM outbox_events")
    print(
        f"{donations} donations through two processes: converged in "
        f"{converged:.1f} s; outbox events {events}, delivered by process one "
        f"{delivered[one.port]:.0f}, by process two {delivered[two.port]:.0f}"
    )
    assert one.scalar("SELECT count(*) FROM outbox_events WHERE status <> 'done'") == 0
    # Each event delivered once, by one process: FOR UPDATE SKIP LOCKED.
    assert sum(delivered.values()) == events
    captured = one.query("SELECT count(*) FROM pledges WHERE status = 'CAPTURED'")[0][0]
    assert captured == donations
    ledger = one.scalar("SELECT sum(counted_cents) FROM totals_ledger")
    assert ledger == sum(amount for _, amount in made)
    assert one.logged_errors() == [] and two.logged_errors() == []


def test_serve_with_two_workers_shares_the_work_on_postgres(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(start=False, serve_args=("--workers", "2"))
    server.start()
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

"""Donors as real clients are, for tests that crash the server under them.

A client sends each request until an answer arrives: a connection that dies
means the answer was lost, so the same request (same idempotency key) goes
again; a busy service (`RATE_LIMITED`) is asked again after a pause. What the
clients were told is kept in a `Tally`, and `check_donations` proves the end
state against it: every acknowledged pledge exists, is CAPTURED exactly once,
and the totals are the CAPTURED pledges.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from careforall.payments.sender import LEASE_SECONDS
from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

RETRY_PAUSE = 0.02  # seconds between tries while the server is away


@dataclass(frozen=True)
class Donation:
    pledge_id: str
    token: str
    campaign_id: str
    amount_cents: int


@dataclass
class Tally:
    """What the clients were told, shared by their threads."""

    acknowledged: dict[str, Donation] = field(default_factory=dict)
    # authorizePayment answered AUTHORIZED or CAPTURED (directly, or, after a
    # lost answer, as the pledge's state when asked).
    authorized: set[str] = field(default_factory=set)
    # authorizePayment answered INVALID_TRANSITION on a retry: the first try had
    # moved the pledge before its answer was lost.
    moved_before_answer_lost: set[str] = field(default_factory=set)
    answers_lost: int = 0  # requests that had to be sent again
    # Tries that reached the server (not a refused connection) and whose
    # answer never came back, by operation.
    lost_in_flight: Counter[str] = field(default_factory=Counter)
    busy_retries: int = 0  # RATE_LIMITED answers asked again
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledge(self, donation: Donation) -> None:
        with self.lock:
            self.acknowledged[donation.pledge_id] = donation

    def count_acknowledged(self) -> int:
        with self.lock:
            return len(self.acknowledged)


class RetryingClient:
    """Sends one GraphQL request until an answer arrives (see the module).

    Given several servers (processes on one database), it starts with the
    first and, like a load balancer, turns to the next when one stops
    answering.
    """

    def __init__(
        self, server: Server | Sequence[Server], tally: Tally, deadline: float
    ) -> None:
        servers = [server] if isinstance(server, Server) else list(server)
        self.urls = [each.base_url for each in servers]
        self.http = httpx.Client(base_url=self.urls[0], timeout=5.0)
        self.tally = tally
        self.deadline = deadline
        self.failovers = 0

    def close(self) -> None:
        self.http.close()

    def send(
        self, query: str, variables: dict[str, Any], token: str
    ) -> tuple[dict[str, Any], bool]:
        """The response body, and whether an earlier try lost its answer."""
        lost = False
        first_field = re.search(r"\{\s*(\w+)", query)
        operation = first_field.group(1) if first_field else "?"
        while True:
            try:
                response = self.http.post(
                    "/graphql",
                    json={"query": query, "variables": variables},
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.TransportError as exc:
                with self.tally.lock:
                    if not lost:
                        self.tally.answers_lost += 1
                    if not isinstance(exc, httpx.ConnectError):
                        self.tally.lost_in_flight[operation] += 1
                lost = True
                self._fail_over()
                self._pause()
                continue
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if codes(body) == ["RATE_LIMITED"]:
                with self.tally.lock:
                    self.tally.busy_retries += 1
                self._pause()
                continue
            return body, lost

    def _fail_over(self) -> None:
        if len(self.urls) > 1:
            self.urls.append(self.urls.pop(0))
            self.http.base_url = httpx.URL(self.urls[0])
            self.failovers += 1

    def _pause(self) -> None:
        if time.monotonic() > self.deadline:
            raise AssertionError("the server stayed away past the client's deadline")
        time.sleep(RETRY_PAUSE)


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or []]


def donate_until(
    stop: threading.Event,
    client: RetryingClient,
    token: str,
    campaign_ids: list[str],
    rng: random.Random,
) -> None:
    """Pledge and pay with pm_card_ok, again and again, until `stop` is set."""
    tally = client.tally
    while not stop.is_set():
        campaign_id = rng.choice(campaign_ids)
        amount = rng.randint(100, 50_000)
        key = f.unique("key")
        body, _ = client.send(
            f.CREATE_PLEDGE,
            {
                "input": {
                    "campaignId": campaign_id,
                    "amountCents": amount,
                    "idempotencyKey": key,
                }
            },
            token,
        )
        assert "errors" not in body, body
        pledge = body["data"]["createPledge"]
        assert (pledge["amountCents"], pledge["idempotencyKey"]) == (amount, key)
        tally.acknowledge(Donation(pledge["id"], token, campaign_id, amount))

        body, lost = client.send(
            f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, token
        )
        if body.get("errors"):
            assert lost and codes(body) == ["INVALID_TRANSITION"], (
                pledge["id"],
                lost,
                body,
            )
            # What a real client does then: ask where its pledge is.
            seen, _ = client.send(f.PLEDGE, {"id": pledge["id"]}, token)
            status = seen["data"]["pledge"]["status"]
            assert status in ("AUTHORIZED", "CAPTURED"), seen
            with tally.lock:
                tally.moved_before_answer_lost.add(pledge["id"])
                tally.authorized.add(pledge["id"])
            continue
        assert body["data"]["authorizePayment"]["status"] in (
            "AUTHORIZED",
            "CAPTURED",
        ), body
        with tally.lock:
            tally.authorized.add(pledge["id"])


def run_threads(
    targets: list[Callable[[], None]],
) -> tuple[list[threading.Thread], list[BaseException]]:
    """Start a daemon thread per target; what they raise lands in the list."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads, errors


class Donors:
    """Client threads donating to a running server, each with its own token."""

    def __init__(
        self,
        server: Server | Sequence[Server],
        tokens: list[str],
        campaign_ids: list[str],
        rng: random.Random,
        *,
        deadline: float,
    ) -> None:
        self.tally = Tally()
        self.stop = threading.Event()
        self.deadline = deadline
        servers = [server] if isinstance(server, Server) else list(server)
        # Client k starts on server k mod n, as a balancer spreads them.
        self.clients = [
            RetryingClient(
                servers[k % len(servers) :] + servers[: k % len(servers)],
                self.tally,
                time.monotonic() + deadline,
            )
            for k in range(len(tokens))
        ]
        rngs = [random.Random(rng.random()) for _ in tokens]
        self.threads, self.errors = run_threads(
            [
                _donor(self.stop, client, token, campaign_ids, client_rng)
                for client, token, client_rng in zip(
                    self.clients, tokens, rngs, strict=True
                )
            ]
        )

    def finish(self) -> Tally:
        """Stop after each client's current donation; fail on any client error."""
        self.stop.set()
        try:
            for thread in self.threads:
                thread.join(self.deadline)
            assert not any(t.is_alive() for t in self.threads), "a client hung"
        finally:
            for client in self.clients:
                client.close()
        assert self.errors == [], self.errors
        return self.tally


def _donor(
    stop: threading.Event,
    client: RetryingClient,
    token: str,
    campaign_ids: list[str],
    rng: random.Random,
) -> Callable[[], None]:
    return lambda: donate_until(stop, client, token, campaign_ids, rng)


def donor_tokens(api: ServerGQL, count: int) -> list[str]:
    """Half guests (anonymous sessions), half registered donors."""
    return [f.anonymous(api) if i % 2 else f.register(api).token for i in range(count)]


# --- reading the end state ------------------------------------------------------


def statuses(server: Server, pledge_ids: Iterable[str]) -> dict[str, str]:
    rows = server.query("SELECT id, status FROM pledges")
    wanted = set(pledge_ids)
    return {pid: status for pid, status in rows if pid in wanted}


def captured_by_campaign(server: Server) -> dict[str, tuple[int, int]]:
    rows = server.query(
        "SELECT campaign_id, sum(amount_cents), count(*) FROM pledges "
        "WHERE status = 'CAPTURED' GROUP BY campaign_id"
    )
    return {cid: (int(raised), int(count)) for cid, raised, count in rows}


def all_captured_and_settled(server: Server, pledge_ids: set[str]) -> bool:
    done = set(statuses(server, pledge_ids).values()) == {"CAPTURED"}
    return done and server.settled()


def wait_until_settled(server: Server, pledge_ids: set[str], timeout: float) -> float:
    """Wait for every pledge CAPTURED and nothing owed; returns the seconds it
    took, or fails saying what is still on the way.

    PostgreSQL: the webhooks a killed process had leased for delivery wait out
    the lease (several processes may serve one database), so up to
    LEASE_SECONDS more.
    """
    if server.is_postgres:
        timeout += LEASE_SECONDS
    began = time.monotonic()
    try:
        wait_until(
            lambda: all_captured_and_settled(server, pledge_ids),
            timeout=timeout,
            interval=0.05,
        )
    except AssertionError:
        raise AssertionError(
            f"not settled within {timeout}s: pledges by status "
            f"{dict(Counter(statuses(server, pledge_ids).values()))}, webhooks owed "
            f"{server.query(OWED_SQL)}, outbox events pending "
            f"{server.query(PENDING_SQL)}"
        ) from None
    return time.monotonic() - began


OWED_SQL = (
    "SELECT event_id, attempts, next_attempt_at, last_error FROM sim_webhooks "
    "WHERE delivered_at IS NULL"
)
PENDING_SQL = (
    "SELECT id, name, attempts, available_at, last_error FROM outbox_events "
    "WHERE status = 'pending'"
)


def check_donations(
    server: Server,
    api: ServerGQL,
    acknowledged: dict[str, Donation],
    campaign_ids: list[str],
) -> None:
    """The end state after crashes, once settled (see the module)."""
    # Every pledge in the database was acknowledged (a lost answer was retried
    # with its key), and every acknowledged pledge is in the database.
    stored = {pid for (pid,) in server.query("SELECT id FROM pledges")}
    assert stored == set(acknowledged)

    # Through the API, with each donor's own token: CAPTURED, one step each.
    for donation in acknowledged.values():
        seen = api.ok(f.PLEDGE, {"id": donation.pledge_id}, donation.token)["pledge"]
        assert seen is not None, donation
        assert (seen["status"], seen["amountCents"]) == (
            "CAPTURED",
            donation.amount_cents,
        )
        moves = [(h["fromStatus"], h["toStatus"]) for h in seen["history"]]
        assert moves == [
            (None, "PENDING"),
            ("PENDING", "AUTHORIZED"),
            ("AUTHORIZED", "CAPTURED"),
        ]

    # Captured exactly once: one history row and one event per pledge.
    captures = Counter(
        pid
        for (pid,) in server.query(
            "SELECT pledge_id FROM pledge_transitions WHERE to_status = 'CAPTURED'"
        )
    )
    assert captures == Counter(dict.fromkeys(acknowledged, 1))
    captured_events: Counter[str] = Counter()
    for (payload,) in server.query(
        "SELECT payload FROM outbox_events WHERE name = 'PledgeStatusChanged'"
    ):
        change = json.loads(payload)
        if change["to_status"] == "CAPTURED":
            captured_events[change["pledge_id"]] += 1
    assert captured_events == captures

    # Totals equal the captured pledges, counted once each.
    captured = captured_by_campaign(server)
    expected: Counter[str] = Counter()
    for donation in acknowledged.values():
        expected[donation.campaign_id] += donation.amount_cents
    for campaign_id in campaign_ids:
        assert f.totals(api, campaign_id) == captured.get(campaign_id, (0, 0))
        assert captured.get(campaign_id, (0, 0))[0] == expected[campaign_id]

    # The provider charged each pledge once and captured every charge.
    assert server.scalar("SELECT count(*) FROM sim_payments") == len(acknowledged)
    assert (
        server.scalar("SELECT count(*) FROM sim_payments WHERE status != 'captured'")
        == 0
    )
    assert (
        server.scalar("SELECT count(*) FROM sim_webhooks WHERE delivered_at IS NULL")
        == 0
    )
    assert (
        server.scalar("SELECT count(*) FROM outbox_events WHERE status != 'done'") == 0
    )

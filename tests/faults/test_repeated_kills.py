"""SIGKILL the server again and again under load, restarting it each time on the
same database file, while donors keep pledging and paying and retry as real
clients do (the same idempotency key, also for a request whose answer was
lost with the connection). In the end: every acknowledged pledge exists, every
authorized one is CAPTURED exactly once, and the totals are the CAPTURED
pledges. The figures are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.clients import (
    Donors,
    check_donations,
    donor_tokens,
    wait_until_settled,
)
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.server

KILLS = int(os.environ.get("CAREFORALL_KILLS", "3"))
CLIENTS = 6
CAMPAIGNS = 3
CLIENT_DEADLINE = 60.0  # a client gives up retrying after this long
PROGRESS_TIMEOUT = 15.0  # for the first donation a server life acknowledges
CONVERGE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Kill:
    """What the database held when one SIGKILL landed."""

    acknowledged: int
    webhooks_owed: frozenset[str]
    outbox_pending: int
    restart_seconds: float


def kill_and_restart(server: Server, acknowledged: int) -> Kill:
    server.kill()
    owed = frozenset(
        event_id
        for (event_id,) in server.query(
            "SELECT event_id FROM sim_webhooks WHERE delivered_at IS NULL"
        )
    )
    pending = server.scalar(
        "SELECT count(*) FROM outbox_events WHERE status = 'pending'"
    )
    return Kill(acknowledged, owed, int(pending), server.start())


@pytest.mark.processes(1, 2)
def test_every_acknowledged_donation_survives_repeated_sigkills(
    make_server: Callable[..., Server],
    server: Server,
    api: ServerGQL,
    database_kind: str,
    processes: int,
) -> None:
    """With two processes (PostgreSQL), the kills take turns between them
    while the other serves on, and the clients fail over as behind a load
    balancer."""
    servers = [server] + [make_server() for _ in range(processes - 1)]
    seed = int(os.environ.get("CAREFORALL_KILLS_SEED", random.randrange(1 << 30)))
    print(f"\nseed {seed} (CAREFORALL_KILLS_SEED)")
    rng = random.Random(seed)
    organiser = f.register(api)
    campaign_ids = [f.campaign(api, organiser.token)["id"] for _ in range(CAMPAIGNS)]
    tokens = donor_tokens(api, CLIENTS)

    kills: list[Kill] = []
    began = time.monotonic()
    donors = Donors(servers, tokens, campaign_ids, rng, deadline=CLIENT_DEADLINE)
    try:
        for _ in range(KILLS + 1):
            # Each life of the server gets work done (a donation acknowledged
            # since it started), then the next kill comes at a random moment.
            since = donors.tally.count_acknowledged()
            wait_until(
                lambda: donors.tally.count_acknowledged() > since,  # noqa: B023
                timeout=PROGRESS_TIMEOUT,
            )
            time.sleep(rng.uniform(0.0, 0.8))  # the kill's random moment: tested
            if len(kills) < KILLS:
                acknowledged_now = donors.tally.count_acknowledged()
                victim = servers[len(kills) % len(servers)]
                kills.append(kill_and_restart(victim, acknowledged_now))
    finally:
        tally = donors.finish()
    load_seconds = time.monotonic() - began

    acknowledged = dict(tally.acknowledged)
    assert len(kills) == KILLS
    assert kills[0].acknowledged > 0, "the first kill came before any donation"
    assert len(acknowledged) > kills[-1].acknowledged, "nothing after the last kill"
    # Every authorization was answered in the end (directly, or found done
    # when its client asked after a lost answer).
    assert tally.authorized == set(acknowledged)
    # The kills cut requests short: their answers were lost and sent again.
    assert sum(tally.lost_in_flight.values()) > 0

    converge_seconds = wait_until_settled(server, set(acknowledged), CONVERGE_TIMEOUT)
    check_donations(server, api, acknowledged, campaign_ids)

    # What the provider owed at each crash was delivered and applied later.
    applied = {e for (e,) in server.query("SELECT event_id FROM webhook_events")}
    for kill in kills:
        assert kill.webhooks_owed <= applied
    for each in servers:
        assert each.logged_errors() == []

    # A kill between a capture and its outbox delivery leaves totals behind;
    # the next start repairs them from the pledges (the ledger keeps the late
    # event from counting twice).
    repaired = sum(s.log_text().count("totals repaired at start") for s in servers)
    failovers = sum(client.failovers for client in donors.clients)
    lost = ", ".join(f"{op} {n}" for op, n in sorted(tally.lost_in_flight.items()))
    print(
        f"repeated kills ({database_kind}, {processes} process(es), clients "
        f"failed over {failovers} times): "
        f"{len(kills)} SIGKILLs survived with {CLIENTS} clients; "
        f"pledges acknowledged {len(acknowledged)} "
        f"(at the kills: {', '.join(str(k.acknowledged) for k in kills)}), "
        f"all {len(tally.authorized)} authorized ones CAPTURED once; "
        f"requests sent again {tally.answers_lost}, "
        f"answers lost in flight {sum(tally.lost_in_flight.values())} ({lost}), "
        f"authorizations found done after a lost answer "
        f"{len(tally.moved_before_answer_lost)}, busy retries {tally.busy_retries}; "
        f"at the kills: webhooks owed "
        f"{', '.join(str(len(k.webhooks_owed)) for k in kills)}, outbox pending "
        f"{', '.join(str(k.outbox_pending) for k in kills)}; restarts "
        f"{', '.join(f'{k.restart_seconds:.2f}s' for k in kills)}, "
        f"{repaired} of them repaired totals; "
        f"load {load_seconds:.1f}s, converged {converge_seconds:.2f}s after it"
    )

"""Rate limits over the API: password guessing (login and register, by address and
by email), card testing (createPledge and authorizePayment, by principal and by
address) and anonymous sessions (by address). A refused call is RATE_LIMITED with
`retryAfterSeconds`, does nothing, and passes once that wait is over. Limits are
per address, email or principal; CAREFORALL_RATE_LIMITS=off turns them off; the
payment webhook is never limited."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from careforall.api import ratelimit
from careforall.services import auth, passwords
from careforall.services.ratelimit import RateLimiter
from careforall.services.ratelimit_shared import SharedRateLimiter
from careforall.settings import Rate, Settings
from tests import factories as f
from tests.helpers.api import GQL

PW = "correct horse"  # the password of f.register
MY_DONATION_COUNT = "{ myDonations(first: 100) { edges { node { id } } } }"
LENIENT = Rate(1000, 60)
RATE_SETTINGS = (
    "rate_limit_auth_per_address",
    "rate_limit_auth_per_email",
    "rate_limit_anonymous_per_address",
    "rate_limit_pledge_per_principal",
    "rate_limit_pledge_per_address",
    "rate_limit_payment_per_principal",
    "rate_limit_payment_per_address",
)


@pytest.fixture(autouse=True)
def cheap_unknown_email_check(
    monkeypatch: pytest.MonkeyPatch, cheap_password_hashing: None
) -> None:
    """Logins for unknown emails verify against a dummy hash; make it cheap too."""
    monkeypatch.setattr(
        passwords, "_DUMMY_HASH", passwords._HASHER.hash("not a password")
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limited(
    app_factory: Callable[..., TestClient], **settings: object
) -> tuple[TestClient, Clock]:
    """An app with rate limits on, these settings, and a clock the test moves."""
    client = app_factory(rate_limits=True, **settings)
    clock = Clock()
    client.app.state.rate_limiter = RateLimiter(clock=clock)  # type: ignore[attr-defined]
    return client, clock


def from_address(client: TestClient, host: str) -> GQL:
    """Another caller of the same running app, from its own address."""
    return GQL(TestClient(client.app, client=(host, 50000)))


def rate_limited(body: dict[str, Any]) -> int:
    """The wait a RATE_LIMITED refusal asks for (the call must have been refused)."""
    assert body.get("errors"), body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED", body
    wait = error["extensions"]["retryAfterSeconds"]
    assert isinstance(wait, int) and wait >= 1
    assert f"wait {wait} seconds" in error["message"]
    return wait


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors")
    return str(errors[0]["extensions"]["code"]) if errors else None


def login(gql: GQL, email: str, password: str = "wrong password") -> dict[str, Any]:
    return gql(f.LOGIN, {"email": email, "password": password})


def register(gql: GQL, email: str) -> dict[str, Any]:
    return gql(f.REGISTER, {"email": email, "password": "correct horse", "name": "N"})


# --- password guessing -------------------------------------------------------------


def test_wrong_passwords_are_limited_per_email_and_address(
    app_factory: Callable[..., TestClient],
) -> None:
    client, clock = limited(
        app_factory,
        rate_limit_auth_per_email=Rate(4, 60),
        rate_limit_auth_per_address=LENIENT,
    )
    gql = GQL(client)
    victim = f.register(gql)
    for _ in range(4):
        assert code(login(gql, victim.email)) == "UNAUTHENTICATED"
    # The guesser's address is done with this email for a while...
    wait = rate_limited(login(gql, victim.email))
    assert wait == 15  # one more try every 60/4 seconds
    # ...however the email is written.
    rate_limited(login(gql, f"  {victim.email.upper()} "))
    # Someone else's email from the same address is not affected by it.
    assert code(login(gql, "someone.else@example.org")) == "UNAUTHENTICATED"
    clock.now += wait
    assert code(login(gql, victim.email)) == "UNAUTHENTICATED"
    rate_limited(login(gql, victim.email))


def test_a_burst_of_concurrent_guesses_cannot_pass_the_last_tries(
    app_factory: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight wrong passwords sent at once, three tries left: each try holds
    its token while its password is checked, so only three are checked."""
    client, _ = limited(
        app_factory,
        rate_limit_auth_per_email=Rate(3, 600),
        rate_limit_auth_per_address=LENIENT,
    )
    victim = f.register(GQL(client))
    checked: list[str] = []

    def slow_wrong(password_hash: str, password: str) -> bool:
        checked.append(password)
        time.sleep(0.3)  # every try is in flight at once
        return False

    monkeypatch.setattr(auth, "verify_password", slow_wrong)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(
                lambda _: code(
                    login(from_address(client, "203.0.113.9"), victim.email)
                ),
                range(8),
            )
        )
    assert sorted(map(str, outcomes)) == ["RATE_LIMITED"] * 5 + ["UNAUTHENTICATED"] * 3
    assert len(checked) == 3


def test_a_strangers_wrong_passwords_never_lock_the_owner_out(
    app_factory: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eleven wrong passwords for bob from elsewhere: bob's own password still
    signs him in, from his address, only slowed down a little."""
    monkeypatch.setattr(ratelimit, "SLOWDOWN_SECONDS", 0.3)
    client, _ = limited(app_factory)  # the default limits
    bob = f.register(from_address(client, "198.51.100.7"))
    stranger = from_address(client, "203.0.113.66")
    outcomes = [code(login(stranger, bob.email)) for _ in range(11)]
    assert outcomes == ["UNAUTHENTICATED"] * 10 + ["RATE_LIMITED"]
    began = time.monotonic()
    assert code(login(from_address(client, "198.51.100.7"), bob.email, PW)) is None
    assert time.monotonic() - began >= 0.3  # slowed down, not refused
    # Strangers at other addresses are slowed down too, and counted.
    for i in range(3):
        other = from_address(client, f"192.0.2.{i + 1}")
        assert code(login(other, bob.email)) == "UNAUTHENTICATED"


def test_two_processes_sharing_a_store_limit_as_one(
    app_factory: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Two apps on one rate-limit store, as the workers of `serve --workers 2`:
    a guesser alternating between them is refused at the count of one, and
    the owner, on the other, is slowed down, not refused."""
    monkeypatch.setattr(ratelimit, "SLOWDOWN_SECONDS", 0.3)
    store, clock = tmp_path / "counts.sqlite", Clock()
    workers = []
    for _ in range(2):
        client = app_factory(
            rate_limits=True,
            rate_limit_store=str(store),
            rate_limit_auth_per_email=Rate(4, 60),
            rate_limit_auth_per_address=LENIENT,
        )
        state = client.app.state  # type: ignore[attr-defined]
        assert isinstance(state.rate_limiter, SharedRateLimiter)
        state.rate_limiter = SharedRateLimiter(store, clock=clock)
        workers.append(client)
    bob = f.register(GQL(workers[0]))
    guesser = [from_address(worker, "203.0.113.9") for worker in workers]
    outcomes = [code(login(guesser[i % 2], bob.email)) for i in range(4)]
    assert outcomes == ["UNAUTHENTICATED"] * 4
    assert rate_limited(login(guesser[0], bob.email)) == 15
    assert rate_limited(login(guesser[1], bob.email)) == 15
    began = time.monotonic()
    assert code(login(from_address(workers[1], "198.51.100.7"), bob.email, PW)) is None
    assert time.monotonic() - began >= 0.3  # slowed down, not refused
    clock.now += 15
    assert code(login(guesser[1], bob.email)) == "UNAUTHENTICATED"
    rate_limited(login(guesser[0], bob.email))


def test_right_passwords_are_not_counted(
    app_factory: Callable[..., TestClient],
) -> None:
    client, _ = limited(
        app_factory,
        rate_limit_auth_per_email=Rate(3, 600),
        rate_limit_auth_per_address=LENIENT,
    )
    gql = GQL(client)
    bob = f.register(gql)
    for _ in range(10):
        assert code(login(gql, bob.email, PW)) is None


def test_register_counts_against_the_address_only(
    app_factory: Callable[..., TestClient],
) -> None:
    client, _ = limited(
        app_factory,
        rate_limit_auth_per_email=Rate(1, 60),
        rate_limit_auth_per_address=Rate(3, 60),
    )
    gql = GQL(client)
    email = "new.person@example.org"
    assert code(register(gql, email)) is None
    assert code(register(gql, email)) == "BAD_USER_INPUT"  # taken
    assert code(login(gql, email, PW)) is None
    rate_limited(register(gql, "another.person@example.org"))


def test_refused_calls_leave_no_keys_behind(
    app_factory: Callable[..., TestClient],
) -> None:
    """Calls refused by the address's limit make no bucket for their emails: a
    flood of them cannot push another person's bucket out of the limiter."""
    client, _ = limited(
        app_factory,
        rate_limit_auth_per_address=Rate(2, 60),
        rate_limit_auth_per_email=Rate(5, 60),
    )
    limiter: RateLimiter = client.app.state.rate_limiter  # type: ignore[attr-defined]
    gql = GQL(client)
    for i in range(2):
        assert code(login(gql, f"guess{i}@example.org")) == "UNAUTHENTICATED"
    keys = len(limiter)
    for i in range(50):
        rate_limited(login(gql, f"flood{i}@example.org"))
    assert len(limiter) == keys


def test_sign_in_tries_are_limited_per_address(
    app_factory: Callable[..., TestClient],
) -> None:
    client, clock = limited(
        app_factory,
        rate_limit_auth_per_address=Rate(3, 60),
        rate_limit_auth_per_email=LENIENT,
    )
    gql = GQL(client)
    for i in range(3):
        assert code(login(gql, f"guess{i}@example.org")) == "UNAUTHENTICATED"
    rate_limited(login(gql, "guess3@example.org"))
    rate_limited(register(gql, "fresh@example.org"))  # one bucket for both
    other = from_address(client, "203.0.113.7")
    assert code(login(other, "guess3@example.org")) == "UNAUTHENTICATED"
    assert code(register(other, "fresh@example.org")) is None
    clock.now += 20
    assert code(login(gql, "guess4@example.org")) == "UNAUTHENTICATED"


# --- anonymous sessions ---------------------------------------------------------------


def test_anonymous_sessions_are_limited_per_address(
    app_factory: Callable[..., TestClient],
) -> None:
    client, clock = limited(app_factory, rate_limit_anonymous_per_address=Rate(2, 60))
    gql = GQL(client)
    assert code(gql(f.ANON)) is None
    assert code(gql(f.ANON)) is None
    wait = rate_limited(gql(f.ANON))
    assert code(from_address(client, "203.0.113.8")(f.ANON)) is None
    clock.now += wait
    assert code(gql(f.ANON)) is None


def test_each_alias_counts_as_a_call(app_factory: Callable[..., TestClient]) -> None:
    client, _ = limited(app_factory, rate_limit_anonymous_per_address=Rate(2, 60))
    body = GQL(client)(
        "mutation { a: startAnonymousSession { token } b: startAnonymousSession "
        "{ token } c: startAnonymousSession { token } }"
    )
    refused = [error for error in body["errors"] if error["path"] == ["c"]]
    assert len(body["errors"]) == 1 and refused
    assert refused[0]["extensions"]["code"] == "RATE_LIMITED"


def test_calls_over_the_websocket_count_too(
    app_factory: Callable[..., TestClient],
) -> None:
    client, _ = limited(app_factory, rate_limit_anonymous_per_address=Rate(2, 60))
    assert code(GQL(client)(f.ANON)) is None
    with client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"]
    ) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        outcomes = []
        for operation_id in ("1", "2"):
            ws.send_json(
                {"id": operation_id, "type": "subscribe", "payload": {"query": f.ANON}}
            )
            message = ws.receive_json()
            assert message["type"] == "next", message
            outcomes.append(code(message["payload"]))
            assert ws.receive_json() == {"id": operation_id, "type": "complete"}
    assert outcomes == [None, "RATE_LIMITED"]


# --- card testing ---------------------------------------------------------------------


def pledge(gql: GQL, token: str, campaign_id: str) -> dict[str, Any]:
    return gql(
        f.CREATE_PLEDGE,
        {
            "input": {
                "campaignId": campaign_id,
                "amountCents": 500,
                "idempotencyKey": f.unique("key"),
            }
        },
        token,
    )


def donations(gql: GQL, token: str) -> int:
    return len(gql.ok(MY_DONATION_COUNT, token=token)["myDonations"]["edges"])


def test_pledges_are_limited_per_principal(
    app_factory: Callable[..., TestClient],
) -> None:
    client, clock = limited(
        app_factory,
        rate_limit_pledge_per_principal=Rate(2, 60),
        rate_limit_pledge_per_address=LENIENT,
    )
    gql = GQL(client)
    campaign = f.campaign(gql, f.register(gql).token)["id"]
    donor, other = f.anonymous(gql), f.anonymous(gql)
    assert code(pledge(gql, donor, campaign)) is None
    assert code(pledge(gql, donor, campaign)) is None
    wait = rate_limited(pledge(gql, donor, campaign))
    assert donations(gql, donor) == 2  # the refused call made nothing
    # Another donor at the same address is not held back by this one.
    assert code(pledge(gql, other, campaign)) is None
    clock.now += wait
    assert code(pledge(gql, donor, campaign)) is None
    assert donations(gql, donor) == 3


def test_pledges_are_limited_per_address_whoever_sends_them(
    app_factory: Callable[..., TestClient],
) -> None:
    client, _ = limited(
        app_factory,
        rate_limit_pledge_per_principal=LENIENT,
        rate_limit_pledge_per_address=Rate(3, 60),
    )
    gql = GQL(client)
    campaign = f.campaign(gql, f.register(gql).token)["id"]
    sessions = [f.anonymous(gql) for _ in range(4)]
    for token in sessions[:3]:
        assert code(pledge(gql, token, campaign)) is None
    # A fresh anonymous session does not escape the address's limit.
    rate_limited(pledge(gql, sessions[3], campaign))
    assert donations(gql, sessions[3]) == 0
    assert (
        code(pledge(from_address(client, "203.0.113.9"), sessions[3], campaign)) is None
    )


def authorize(gql: GQL, token: str, pledge_id: str, pm: str) -> dict[str, Any]:
    return gql(f.AUTHORIZE, {"id": pledge_id, "pm": pm}, token)


def test_payment_attempts_are_limited_per_principal(
    app_factory: Callable[..., TestClient],
) -> None:
    """Card testing: one donor trying card after card is stopped, and a pledge it
    could not try stays PENDING (nothing was sent to the provider)."""
    client, clock = limited(
        app_factory,
        auto_capture=False,
        rate_limit_payment_per_principal=Rate(2, 60),
        rate_limit_payment_per_address=LENIENT,
    )
    gql = GQL(client)
    campaign = f.campaign(gql, f.register(gql).token)["id"]
    tester, honest = f.anonymous(gql), f.anonymous(gql)
    pledges = [pledge(gql, tester, campaign)["data"]["createPledge"] for _ in range(3)]
    for p in pledges[:2]:
        body = authorize(gql, tester, p["id"], "pm_card_declined")
        assert body["data"]["authorizePayment"]["status"] == "FAILED"
    wait = rate_limited(authorize(gql, tester, pledges[2]["id"], "pm_card_ok"))
    assert gql.ok(f.PLEDGE, {"id": pledges[2]["id"]}, tester)["pledge"]["status"] == (
        "PENDING"
    )
    mine = pledge(gql, honest, campaign)["data"]["createPledge"]
    assert code(authorize(gql, honest, mine["id"], "pm_card_ok")) is None
    clock.now += wait
    body = authorize(gql, tester, pledges[2]["id"], "pm_card_ok")
    assert body["data"]["authorizePayment"]["status"] == "AUTHORIZED"


def test_payment_attempts_are_limited_per_address(
    app_factory: Callable[..., TestClient],
) -> None:
    client, _ = limited(
        app_factory,
        auto_capture=False,
        rate_limit_payment_per_principal=LENIENT,
        rate_limit_payment_per_address=Rate(2, 60),
    )
    gql = GQL(client)
    campaign = f.campaign(gql, f.register(gql).token)["id"]
    made = []
    for _ in range(3):
        token = f.anonymous(gql)
        made.append((token, pledge(gql, token, campaign)["data"]["createPledge"]["id"]))
    for token, pledge_id in made[:2]:
        assert code(authorize(gql, token, pledge_id, "pm_card_declined")) is None
    token, pledge_id = made[2]
    rate_limited(authorize(gql, token, pledge_id, "pm_card_ok"))
    elsewhere = from_address(client, "198.51.100.20")
    assert code(authorize(elsewhere, token, pledge_id, "pm_card_ok")) is None


# --- behind a proxy --------------------------------------------------------------


def test_a_trusted_proxy_names_the_client(
    app_factory: Callable[..., TestClient],
) -> None:
    client, _ = limited(
        app_factory,
        trusted_proxies=("10.0.0.0/8",),
        rate_limit_anonymous_per_address=Rate(1, 60),
    )
    proxy = TestClient(client.app, client=("10.0.0.2", 40000))

    def start(forwarded_for: str) -> dict[str, Any]:
        response = proxy.post(
            "/graphql",
            json={"query": f.ANON},
            headers={"X-Forwarded-For": forwarded_for},
        )
        body: dict[str, Any] = response.json()
        return body

    assert code(start("198.51.100.1")) is None
    rate_limited(start("198.51.100.1"))
    assert code(start("198.51.100.2")) is None  # another client behind the proxy
    # A client cannot pick its own address: the header is only believed from a proxy.
    direct = TestClient(client.app, client=("198.51.100.3", 40000))
    for spoof in ("203.0.113.1", "203.0.113.2"):
        response = direct.post(
            "/graphql", json={"query": f.ANON}, headers={"X-Forwarded-For": spoof}
        )
        outcome = code(response.json())
    assert outcome == "RATE_LIMITED"


# --- off, and never on the webhook ---------------------------------------------------


def test_rate_limits_off_limits_nothing(app_factory: Callable[..., TestClient]) -> None:
    tiny = Rate(1, 3600)
    client = app_factory(
        rate_limits=False,
        rate_limit_anonymous_per_address=tiny,
        rate_limit_auth_per_address=tiny,
        rate_limit_auth_per_email=tiny,
    )
    gql = GQL(client)
    for _ in range(5):
        assert code(gql(f.ANON)) is None
        assert code(login(gql, "same@example.org")) == "UNAUTHENTICATED"
    assert Settings.from_env({"CAREFORALL_RATE_LIMITS": "off"}).rate_limits is False


def test_the_payment_webhook_is_never_limited(
    app_factory: Callable[..., TestClient],
) -> None:
    tiny = Rate(1, 3600)
    client, _ = limited(
        app_factory,
        auto_capture=False,
        **dict.fromkeys(RATE_SETTINGS, tiny),
    )
    gql = GQL(client)
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    made = f.pledge(gql, organiser.token, campaign["id"])
    events = [f.provider_event(made, kind) for kind in ("authorized", "captured")]
    answers = [f.post_webhook(client, event).json() for event in events * 10]
    assert answers[:2] == [{"received": True, "duplicate": False}] * 2
    assert answers[2:] == [{"received": True, "duplicate": True}] * 18
    status = gql.ok(f.PLEDGE, {"id": made["id"]}, organiser.token)["pledge"]["status"]
    assert status == "CAPTURED"


# --- campaigns ---------------------------------------------------------------------

SET_STATUS = """mutation($id: ID!, $status: CampaignStatus!) {
  setCampaignStatus(id: $id, status: $status) { id status } }"""


def create_campaign(gql: GQL, token: str) -> dict[str, Any]:
    data = {
        "title": "Surgery for Sam",
        "description": "Help pay for an operation.",
        "category": "surgery",
        "goalCents": 500_000,
        "currency": "USD",
    }
    return gql(f.CREATE_CAMPAIGN, {"input": data}, token)


def test_creating_campaigns_is_limited_per_principal(
    app_factory: Callable[..., TestClient],
) -> None:
    client, clock = limited(
        app_factory,
        rate_limit_campaign_per_principal=Rate(2, 3600),
        rate_limit_auth_per_address=LENIENT,
    )
    gql = GQL(client)
    organiser, other = f.register(gql), f.register(gql)
    assert code(create_campaign(gql, organiser.token)) is None
    assert code(create_campaign(gql, organiser.token)) is None

    wait = rate_limited(create_campaign(gql, organiser.token))

    assert wait == 1800
    assert len(gql.ok(MY_CAMPAIGNS, token=organiser.token)["myCampaigns"]["edges"]) == 2
    assert code(create_campaign(gql, other.token)) is None
    clock.now += wait
    assert code(create_campaign(gql, organiser.token)) is None


def test_creating_campaigns_is_limited_per_address(
    app_factory: Callable[..., TestClient],
) -> None:
    client, _ = limited(
        app_factory,
        rate_limit_campaign_per_address=Rate(2, 3600),
        rate_limit_auth_per_address=LENIENT,
    )
    gql = GQL(client)
    accounts = [f.register(gql) for _ in range(3)]
    for account in accounts[:2]:
        assert code(create_campaign(gql, account.token)) is None
    # A fresh account does not escape the address's limit.
    rate_limited(create_campaign(gql, accounts[2].token))
    other = from_address(client, "203.0.113.9")
    assert code(create_campaign(other, accounts[2].token)) is None


def test_campaign_status_changes_are_limited_per_principal(
    app_factory: Callable[..., TestClient],
) -> None:
    client, clock = limited(
        app_factory,
        rate_limit_campaign_status_per_principal=Rate(2, 60),
        rate_limit_auth_per_address=LENIENT,
    )
    gql = GQL(client)
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)["id"]
    for status in ("PAUSED", "ACTIVE"):
        gql.ok(SET_STATUS, {"id": campaign, "status": status}, organiser.token)

    wait = rate_limited(
        gql(SET_STATUS, {"id": campaign, "status": "PAUSED"}, organiser.token)
    )

    assert wait == 30
    clock.now += wait
    gql.ok(SET_STATUS, {"id": campaign, "status": "PAUSED"}, organiser.token)


MY_CAMPAIGNS = "{ myCampaigns(first: 100) { edges { node { id } } } }"

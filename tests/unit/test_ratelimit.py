"""The rate limiter on its own: token buckets, all-or-nothing hits, bounded memory,
thread safety; the client address behind proxies; the settings that configure it."""

from __future__ import annotations

import threading

import pytest
from starlette.requests import Request

from careforall.api.ratelimit import client_address
from careforall.services.ratelimit import RateLimiter
from careforall.settings import Rate, Settings, SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_burst_passes_then_the_next_waits_for_its_token(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    rate = Rate(3, 60)
    assert [limiter.hit([("k", rate)]) for _ in range(3)] == [None, None, None]
    assert limiter.hit([("k", rate)]) == 20  # one token every 60/3 seconds
    clock.now += 19.5
    assert limiter.hit([("k", rate)]) == 1  # rounded up, never 0
    clock.now += 0.5
    assert limiter.hit([("k", rate)]) is None
    assert limiter.hit([("k", rate)]) == 20


def test_a_long_pause_refills_to_the_burst_and_no_more(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    rate = Rate(2, 10)
    limiter.hit([("k", rate)])
    clock.now += 3600
    assert [limiter.hit([("k", rate)]) for _ in range(3)] == [None, None, 5]


def test_keys_are_independent(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    rate = Rate(1, 60)
    assert limiter.hit([("a", rate)]) is None
    assert limiter.hit([("a", rate)]) == 60
    assert limiter.hit([("b", rate)]) is None


def test_a_refused_hit_takes_no_token_from_any_key(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    wide, narrow = Rate(5, 60), Rate(1, 60)
    assert limiter.hit([("wide", wide), ("narrow", narrow)]) is None
    assert limiter.hit([("wide", wide), ("narrow", narrow)]) == 60
    # "wide" kept its tokens: 4 left after the one successful hit.
    assert [limiter.hit([("wide", wide)]) for _ in range(5)] == [None] * 4 + [12]


def test_a_refused_hit_makes_no_key(clock: Clock) -> None:
    """Otherwise a flood of refused calls, each naming a new key, would push
    out the buckets of others (and give their holders a full bucket again)."""
    limiter = RateLimiter(clock=clock)
    full = Rate(1, 60)
    assert limiter.hit([("address", full)]) is None
    assert len(limiter) == 1
    for i in range(10):
        assert limiter.hit([("address", full), (f"email{i}", full)]) == 60
    assert len(limiter) == 1


def test_required_buckets_are_looked_at_not_taken_from(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    rate = Rate(2, 60)
    assert limiter.hit([("call", rate)], require=[("failures", rate)]) is None
    assert len(limiter) == 1 and not limiter.empty("failures", rate)
    limiter.take([("failures", rate)])
    limiter.take([("failures", rate)])
    limiter.take([("failures", rate)])  # never below empty
    assert limiter.empty("failures", rate)
    assert limiter.hit([("call", rate)], require=[("failures", rate)]) == 30
    clock.now += 30
    assert limiter.hit([("call", rate)], require=[("failures", rate)]) is None


def test_the_longest_wait_is_reported(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    limiter.hit([("a", Rate(1, 10)), ("b", Rate(1, 300))])
    assert limiter.hit([("a", Rate(1, 10)), ("b", Rate(1, 300))]) == 300


def test_memory_is_bounded_and_the_least_recent_key_goes_first(clock: Clock) -> None:
    limiter = RateLimiter(max_keys=3, clock=clock)
    rate = Rate(1, 60)
    for key in ("a", "b", "c"):
        assert limiter.hit([(key, rate)]) is None
    assert limiter.hit([("a", rate)]) == 60  # "a" is now the most recent
    for i in range(100):
        limiter.hit([(f"new{i}", rate)])
    assert len(limiter) == 3
    assert limiter.hit([("a", rate)]) is None  # evicted: starts full again


def test_concurrent_hits_never_take_more_than_the_burst(clock: Clock) -> None:
    limiter = RateLimiter(clock=clock)
    rate = Rate(250, 3600)
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(100):
            ok = limiter.hit([("shared", rate)]) is None
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(allowed) == 800
    assert sum(allowed) == 250


# --- the client address --------------------------------------------------------------


def request_from(peer: str, *forwarded_for: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded_for]
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/graphql",
            "headers": headers,
            "client": (peer, 40000),
        }
    )


PROXIES = ("10.0.0.0/8", "192.0.2.1")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "proxies", "expected"),
    [
        pytest.param("198.51.100.7", (), (), "198.51.100.7", id="no-proxy"),
        pytest.param(
            "198.51.100.7", ("203.0.113.9",), (), "198.51.100.7", id="header-ignored"
        ),
        pytest.param(
            "198.51.100.7",
            ("203.0.113.9",),
            PROXIES,
            "198.51.100.7",
            id="untrusted-peer-cannot-claim-an-address",
        ),
        pytest.param(
            "10.1.2.3", ("203.0.113.9",), PROXIES, "203.0.113.9", id="trusted-proxy"
        ),
        pytest.param(
            "10.1.2.3",
            ("1.2.3.4, 203.0.113.9, 192.0.2.1",),
            PROXIES,
            "203.0.113.9",
            id="rightmost-untrusted-hop",
        ),
        pytest.param(
            "10.1.2.3",
            ("1.2.3.4", "203.0.113.9"),
            PROXIES,
            "203.0.113.9",
            id="repeated-header",
        ),
        pytest.param(
            "10.1.2.3", ("10.9.9.9",), PROXIES, "10.9.9.9", id="all-hops-trusted"
        ),
        pytest.param("10.1.2.3", (), PROXIES, "10.1.2.3", id="proxy-without-header"),
        pytest.param(
            "192.0.2.1", ("2001:db8::1",), PROXIES, "2001:db8::1", id="ipv6-client"
        ),
    ],
)
def test_client_address(
    peer: str, forwarded_for: tuple[str, ...], proxies: tuple[str, ...], expected: str
) -> None:
    assert client_address(request_from(peer, *forwarded_for), proxies) == expected


# --- settings ------------------------------------------------------------------------


def test_rates_and_proxies_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "CAREFORALL_RATE_LIMIT_AUTH_PER_EMAIL": "5/900",
            "CAREFORALL_RATE_LIMIT_PAYMENT_PER_ADDRESS": " 100/60 ",
            "CAREFORALL_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1",
        }
    )
    assert settings.rate_limit_auth_per_email == Rate(5, 900)
    assert settings.rate_limit_payment_per_address == Rate(100, 60)
    assert (
        settings.rate_limit_auth_per_address == Settings().rate_limit_auth_per_address
    )
    assert settings.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")


def test_defaults_from_the_environment_equal_the_class_defaults() -> None:
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("value", ["10", "0/60", "10/0", "ten/60", "10/-5", "1.5/60"])
def test_a_rate_that_is_not_requests_per_seconds_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="CAREFORALL_RATE_LIMIT_PLEDGE_PER_ADDRESS"):
        Settings.from_env({"CAREFORALL_RATE_LIMIT_PLEDGE_PER_ADDRESS": value})


def test_a_proxy_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(SettingsError, match="CAREFORALL_TRUSTED_PROXIES"):
        Settings.from_env({"CAREFORALL_TRUSTED_PROXIES": "10.0.0.1,proxy.local"})

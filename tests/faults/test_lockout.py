"""Locking someone out, against a real server with its rate limits on: a
stranger tries wrong passwords for bob's email, more than the limit allows,
from an address of their own (127.0.0.2); bob then signs in with his own
password from his (127.0.0.3). He must get in, slowed down at most, while
the stranger stays refused. `pytest -s` prints the outcomes and how long
bob's sign-in took."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests import factories as f
from tests.helpers.server import Server

pytestmark = [pytest.mark.server, pytest.mark.sqlite_only]  # no database at stake

BOB = "bob@example.org"
BOBS_PASSWORD = "bob's own passphrase"
WRONG_TRIES = 12


def client_from(server: Server, address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x works on Linux)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.base_url, transport=transport, timeout=30.0)


def call(client: httpx.Client, query: str, variables: dict[str, Any]) -> Any:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    return response.json()


def code(body: Any) -> str | None:
    errors = body.get("errors")
    return str(errors[0]["extensions"]["code"]) if errors else None


def test_a_strangers_wrong_passwords_do_not_lock_bob_out(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(CAREFORALL_RATE_LIMITS="on")
    with (
        client_from(server, "127.0.0.3") as bob,
        client_from(server, "127.0.0.2") as stranger,
    ):
        body = call(
            bob,
            f.REGISTER,
            {"email": BOB, "password": BOBS_PASSWORD, "name": "Bob"},
        )
        assert code(body) is None, body
        wrong = {"email": BOB, "password": "is it hunter2?"}
        outcomes = [code(call(stranger, f.LOGIN, wrong)) for _ in range(WRONG_TRIES)]
        began = time.perf_counter()
        body = call(bob, f.LOGIN, {"email": BOB, "password": BOBS_PASSWORD})
        took = time.perf_counter() - began
        still = code(call(stranger, f.LOGIN, wrong))
    print(
        f"\nstranger's {WRONG_TRIES} wrong passwords for {BOB}: {outcomes}\n"
        f"bob's own password, from his address: {code(body) or 'signed in'} "
        f"in {took:.2f} s\n"
        f"the stranger's next try: {still}"
    )
    assert outcomes.count("UNAUTHENTICATED") >= 10
    assert code(body) is None, body
    assert body["data"]["login"]["user"]["email"] == BOB
    assert took < 5.0
    assert still == "RATE_LIMITED"

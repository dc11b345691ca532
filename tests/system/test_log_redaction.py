"""A real server at DEBUG, driven with passwords, tokens and card numbers in
every place a client can put them: none of them reaches its log output."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests import factories as f
from tests.helpers.api import ADMIN_PASSWORD, ServerGQL
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.server

PASSWORD = "Tr0ub4dor&3-horse-battery-staple"
WRONG_PASSWORD = "Tr0ub4dor&3-wrong-guess-again"
CARD = "4111111111111111"
SPACED_CARD = "4111 1111 1111 1111"
FORGED_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1c3JfZm9yZ2VkIiwia2luZCI6InVzZXIiLCJyb2xlIjoiQURNSU4ifQ."
    "Zm9yZ2VkLXNpZ25hdHVyZS1ieXRlcw"
)
SIGNATURE_HEX = "9f" * 32


def test_no_password_token_secret_or_card_number_reaches_the_log(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(CAREFORALL_LOG_LEVEL="DEBUG")
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        api = ServerGQL(http)
        email = f"{f.unique('dana')}@example.org"
        register = api.ok(
            f.REGISTER, {"email": email, "password": PASSWORD, "name": "Dana"}
        )
        user_token = register["register"]["token"]
        assert api.code(f.LOGIN, {"email": email, "password": WRONG_PASSWORD})
        login_token = api.ok(f.LOGIN, {"email": email, "password": PASSWORD})["login"][
            "token"
        ]
        admin_token = f.admin(api).token
        assert api.ok("query { me { role } }", token=admin_token)["me"]["role"] == (
            "ADMIN"
        )
        anon_token = f.anonymous(api)
        campaign = f.campaign(api, user_token)
        note = f"My card is {SPACED_CARD} and my password is {PASSWORD}"
        pledge = f.pledge(
            api, anon_token, campaign["id"], message=note, donorName=f"Dana {CARD}"
        )
        # A card number where a payment method belongs is refused, not logged.
        assert (
            api.code(f.AUTHORIZE, {"id": pledge["id"], "pm": CARD}, anon_token)
            == "BAD_USER_INPUT"
        )
        api.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, anon_token)
        assert api.code(f.PLEDGE, {"id": pledge["id"]}, FORGED_TOKEN) == (
            "UNAUTHENTICATED"
        )
        refused = http.post(
            "/webhooks/payments",
            content=json.dumps(f.provider_event(pledge, "captured")).encode(),
            headers={"CareForAll-Signature": f"t=1,v1={SIGNATURE_HEX}"},
        )
        assert refused.status_code == 400
        # Request lines carry the path: a careless link puts secrets there too.
        http.get(f"/donate/{CARD}")
        http.get(f"/session/{FORGED_TOKEN}")
        wait_until(server.settled, timeout=10)
    jwt_secret = server.scalar("SELECT value FROM app_secrets WHERE name='jwt_secret'")
    webhook_secret = server.scalar(
        "SELECT value FROM app_secrets WHERE name='webhook_secret'"
    )
    server.stop()

    text = server.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # The log is verbose enough for the scan to mean something.
    assert any(line.get("level") == "debug" for line in lines)
    kinds = {line.get("principal") for line in lines if line["message"] == "request"}
    assert {"none", "anon", "user", "admin", "invalid"} <= kinds
    assert any(line.get("pledge_id") == pledge["id"] for line in lines)
    assert any(line["message"] == "webhook refused" for line in lines)
    paths = {line.get("path") for line in lines if line["message"] == "request"}
    assert {"/donate/[REDACTED_CARD]", "/session/[REDACTED_JWT]"} <= paths

    secrets = {
        "password": PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "admin password": ADMIN_PASSWORD,
        "user token": user_token,
        "login token": login_token,
        "admin token": admin_token,
        "anonymous token": anon_token,
        "forged token": FORGED_TOKEN,
        "card": CARD,
        "spaced card": SPACED_CARD,
        "signature": SIGNATURE_HEX,
        "jwt secret": jwt_secret,
        "webhook secret": webhook_secret,
    }
    for what, value in secrets.items():
        assert value not in text, f"the {what} was logged"
    for token in (user_token, admin_token, anon_token):
        assert token.split(".")[2] not in text  # not even a token's signature

"""Accounts over HTTP (contract 0.3): a password reset and an address
verification from the link in the kept mail to the new password or the
verified address, emailVerified, and the rate limits on asking for mails."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

from sqlmodel import col, select
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.models import Mail, Pledge
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.waiting import wait_until

ME = "{ me { id email emailVerified } }"
REQUEST_RESET = "mutation($email: String!) { requestPasswordReset(email: $email) }"
RESET = """
mutation($token: String!, $password: String!) {
  resetPassword(token: $token, newPassword: $password) {
    token user { id emailVerified }
  }
}"""
REQUEST_VERIFICATION = "mutation { requestEmailVerification }"
VERIFY = "mutation($token: String!) { verifyEmail(token: $token) { id emailVerified } }"


def database(client: TestClient) -> Database:
    db: Database = client.app.state.runtime.db  # type: ignore[attr-defined]
    return db


def mails_to(client: TestClient, address: str, kind: str) -> list[Mail]:
    with database(client).read() as session:
        return list(
            session.exec(
                select(Mail)
                .where(Mail.to_address == address, Mail.kind == kind)
                .order_by(col(Mail.id))
            ).all()
        )


def link_token(client: TestClient, address: str, kind: str, count: int = 1) -> str:
    """The token of the newest link mailed to `address` (waits for the outbox)."""
    wait_until(lambda: len(mails_to(client, address, kind)) >= count)
    text = mails_to(client, address, kind)[-1].text
    [url] = re.findall(r"https?://\S+\?token=\S+", text)
    [token] = parse_qs(urlparse(url).query)["token"]
    return token


def test_a_forgotten_password_is_reset_through_the_mailed_link(
    client: TestClient, gql: GQL
) -> None:
    account = f.register(gql)
    assert gql.ok(REQUEST_RESET, {"email": account.email})["requestPasswordReset"]
    token = link_token(client, account.email, "password_reset")
    mail = mails_to(client, account.email, "password_reset")[0]
    assert "http://127.0.0.1:8000/reset-password?token=" in mail.html

    payload = gql.ok(RESET, {"token": token, "password": "a new passphrase"})[
        "resetPassword"
    ]
    assert payload["user"] == {"id": account.id, "emailVerified": True}
    assert gql.ok(ME, token=payload["token"])["me"]["emailVerified"] is True
    assert gql.code(ME, token=account.token) == "UNAUTHENTICATED"
    assert gql.code(f.LOGIN, {"email": account.email, "password": "correct horse"})
    gql.ok(f.LOGIN, {"email": account.email, "password": "a new passphrase"})
    # The same link a second time: refused, nothing changed.
    body = gql(RESET, {"token": token, "password": "another passphrase"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "not valid" in body["errors"][0]["message"]
    gql.ok(f.LOGIN, {"email": account.email, "password": "a new passphrase"})


def test_an_unknown_address_answers_true_and_gets_no_mail(
    client: TestClient, gql: GQL
) -> None:
    address = f"{f.unique('nobody')}@example.org"
    assert gql.ok(REQUEST_RESET, {"email": address})["requestPasswordReset"] is True
    known = f.register(gql)
    gql.ok(REQUEST_RESET, {"email": known.email})
    link_token(client, known.email, "password_reset")  # the outbox got there
    assert mails_to(client, address, "password_reset") == []
    assert gql.code(REQUEST_RESET, {"email": "not an address"}) == "BAD_USER_INPUT"


def test_a_new_account_verifies_its_address_with_the_mailed_link(
    client: TestClient, gql: GQL
) -> None:
    account = f.register(gql)
    assert gql.ok(ME, token=account.token)["me"]["emailVerified"] is False
    first = link_token(client, account.email, "email_verification")  # on register
    assert gql.ok(REQUEST_VERIFICATION, token=account.token)
    second = link_token(client, account.email, "email_verification", count=2)
    assert gql.code(VERIFY, {"token": first}) == "BAD_USER_INPUT"  # replaced
    verified = gql.ok(VERIFY, {"token": second})["verifyEmail"]
    assert verified == {"id": account.id, "emailVerified": True}
    assert gql.ok(ME, token=account.token)["me"]["emailVerified"] is True
    assert gql.code(VERIFY, {"token": second}) == "BAD_USER_INPUT"  # used
    # Verified already: true, and no third mail.
    assert gql.ok(REQUEST_VERIFICATION, token=account.token)
    assert len(mails_to(client, account.email, "email_verification")) == 2


def test_asking_for_mails_is_rate_limited_per_email_and_per_address(
    app_factory: Callable[..., TestClient],
) -> None:
    client = app_factory(rate_limits=True)
    gql = GQL(client)
    address = f"{f.unique('target')}@example.org"
    for _ in range(5):
        gql.ok(REQUEST_RESET, {"email": address.upper()})
    body: dict[str, Any] = gql(REQUEST_RESET, {"email": address})
    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    for n in range(15):  # 20 a connection in all
        gql.ok(REQUEST_RESET, {"email": f"other-{n}@example.org"})
    assert gql.code(REQUEST_RESET, {"email": "fresh@example.org"}) == "RATE_LIMITED"


def test_a_guest_gives_a_donor_email_that_is_never_shown(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    guest = f.anonymous(gql)
    pledge = f.pledge(gql, guest, campaign["id"], donorEmail="Guest@Example.org")
    assert "Guest" not in str(pledge) and "guest@" not in str(pledge)
    with database(client).read() as session:
        row = session.get(Pledge, pledge["id"])
    assert row is not None and row.donor_email == "guest@example.org"
    body = gql(
        f.CREATE_PLEDGE,
        {
            "input": {
                "campaignId": campaign["id"],
                "amountCents": 100,
                "idempotencyKey": f.unique("key"),
                "donorEmail": "two@example.org, three@example.org",
            }
        },
        guest,
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

"""Sessions and accounts over HTTP (contract 0.3): logout and changePassword
end tokens, token lifetimes and the renewal of anonymous tokens, common
passwords and look-alike addresses refused, and an admin address that an
existing account already has never making that account admin."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import jwt
import pytest
from starlette.testclient import TestClient

from careforall.api import context as context_module
from careforall.app import create_app
from careforall.services.tokens import RENEWED_TOKEN_HEADER
from careforall.settings import Settings
from tests import factories as f
from tests.helpers.api import GQL

ME = "{ me { id role } }"
MY_DONATIONS = "{ myDonations(first: 5) { edges { node { id } } } }"
LOGOUT = "mutation { logout }"
CHANGE_PASSWORD = """
mutation($current: String!, $new: String!) {
  changePassword(currentPassword: $current, newPassword: $new) {
    token anonymous user { id email }
  }
}"""


def secret_of(client: TestClient) -> str:
    secret: str = client.app.state.runtime.keys.secret  # type: ignore[attr-defined]
    return secret


def test_on_postgresql_a_token_is_checked_off_the_event_loop(
    gql: GQL, database_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's check is a round trip across the network: made on the event
    loop it would hold every other request meanwhile. SQLite's is a local read,
    cheaper than the hop to a thread."""
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    donor = f.anonymous(gql)
    on_the_loop: list[bool] = []
    authenticate = context_module.authenticate

    def recorded(*args: object) -> object:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            on_the_loop.append(False)
        else:
            on_the_loop.append(True)
        return authenticate(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(context_module, "authenticate", recorded)
    pledge = f.pledge(gql, donor, campaign_id, amount=1200)

    assert pledge["amountCents"] == 1200
    assert on_the_loop == [database_kind == "sqlite"]


def test_logout_ends_the_token_sent(gql: GQL) -> None:
    account = f.register(gql)
    assert gql.ok(ME, token=account.token)["me"]["id"] == account.id
    assert gql.ok(LOGOUT, token=account.token) == {"logout": True}
    body = gql(ME, token=account.token)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "ended" in body["errors"][0]["message"]
    assert gql.code(LOGOUT, token=account.token) == "UNAUTHENTICATED"
    fresh = gql.ok(f.LOGIN, {"email": account.email, "password": "correct horse"})
    assert gql.ok(ME, token=fresh["login"]["token"])["me"]["id"] == account.id


def test_logout_ends_an_anonymous_token(gql: GQL) -> None:
    token = f.anonymous(gql)
    assert gql.ok(LOGOUT, token=token) == {"logout": True}
    assert gql.code(MY_DONATIONS, token=token) == "UNAUTHENTICATED"


def test_logout_without_a_token_is_unauthenticated(gql: GQL) -> None:
    assert gql.code(LOGOUT) == "UNAUTHENTICATED"


def test_change_password_ends_every_earlier_token(gql: GQL) -> None:
    account = f.register(gql)
    other = gql.ok(f.LOGIN, {"email": account.email, "password": "correct horse"})
    data = gql.ok(
        CHANGE_PASSWORD,
        {"current": "correct horse", "new": "a far better passphrase"},
        account.token,
    )["changePassword"]
    assert data["user"] == {"id": account.id, "email": account.email}
    assert data["anonymous"] is False
    assert gql.ok(ME, token=data["token"])["me"]["id"] == account.id
    for ended in (account.token, other["login"]["token"]):
        assert gql.code(ME, token=ended) == "UNAUTHENTICATED"
    login = {"email": account.email, "password": "correct horse"}
    assert gql.code(f.LOGIN, login) == "UNAUTHENTICATED"
    gql.ok(f.LOGIN, login | {"password": "a far better passphrase"})


@pytest.mark.parametrize(
    ("current", "new", "word"),
    [
        ("not my password", "a far better passphrase", "current password"),
        ("correct horse", "password123", "common"),
        ("correct horse", "short", "at least"),
    ],
)
def test_change_password_refusals_change_nothing(
    gql: GQL, current: str, new: str, word: str
) -> None:
    account = f.register(gql)
    body = gql(CHANGE_PASSWORD, {"current": current, "new": new}, account.token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert word in body["errors"][0]["message"]
    assert gql.ok(ME, token=account.token)["me"]["id"] == account.id


def test_change_password_is_for_signed_in_users(gql: GQL) -> None:
    variables = {"current": "x", "new": "a far better passphrase"}
    assert gql.code(CHANGE_PASSWORD, variables) == "UNAUTHENTICATED"
    assert gql.code(CHANGE_PASSWORD, variables, f.anonymous(gql)) == ("UNAUTHENTICATED")


def _lifetime(token: str) -> int:
    claims = jwt.decode(token, options={"verify_signature": False})
    return int(claims["exp"]) - int(claims["iat"])


def test_tokens_live_a_day_for_users_and_thirty_days_for_guests(gql: GQL) -> None:
    assert _lifetime(f.register(gql).token) == 24 * 3600
    assert _lifetime(f.anonymous(gql)) == 30 * 86_400
    assert Settings.from_env({}).user_token_hours == 24
    assert Settings.from_env({"CAREFORALL_TOKEN_HOURS": "2"}).user_token_hours == 2


def test_an_anonymous_token_in_use_is_renewed(gql: GQL, client: TestClient) -> None:
    """A guest's token issued more than a day ago comes back renewed in the
    X-Renewed-Token header when used; a fresh one does not."""
    token = f.anonymous(gql)
    headers = {"Authorization": f"Bearer {token}"}
    answer = client.post("/graphql", json={"query": MY_DONATIONS}, headers=headers)
    assert RENEWED_TOKEN_HEADER not in answer.headers
    claims = jwt.decode(token, options={"verify_signature": False})
    two_days_ago = int(time.time()) - 2 * 86_400
    old = jwt.encode(
        claims | {"iat": two_days_ago, "exp": two_days_ago + 30 * 86_400},
        secret_of(client),
        algorithm="HS256",
    )
    answer = client.post(
        "/graphql",
        json={"query": MY_DONATIONS},
        headers={"Authorization": f"Bearer {old}"},
    )
    assert "errors" not in answer.json()
    renewed = answer.headers[RENEWED_TOKEN_HEADER]
    assert _lifetime(renewed) == 30 * 86_400
    fresh = jwt.decode(renewed, options={"verify_signature": False})
    assert fresh["sub"] == claims["sub"] and fresh["iat"] > two_days_ago
    gql.ok(MY_DONATIONS, token=renewed)


def test_common_passwords_are_refused_at_registration(gql: GQL) -> None:
    body = gql(
        f.REGISTER,
        {"email": "new@example.org", "password": "Password123", "name": "N"},
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "common" in body["errors"][0]["message"]


def test_a_look_alike_of_an_existing_address_is_refused(gql: GQL) -> None:
    gql.ok(
        f.REGISTER,
        {"email": "paypal@example.org", "password": "correct horse", "name": "P"},
    )
    for spoof in ("pаypal@example.org", "PAYPAL@EXAMPLE.ORG", "ｐaypal@example.org"):
        body = gql(
            f.REGISTER, {"email": spoof, "password": "correct horse", "name": "S"}
        )
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", spoof


# --- the admin address at start ---------------------------------------------------


def _app(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


@pytest.mark.sqlite_only
def test_the_admin_address_never_promotes_an_existing_account(
    settings: Settings,
    tmp_path: Path,
    template_db: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Someone registers ops@ before the operator restarts with
    CAREFORALL_ADMIN_EMAIL=ops@: the server says so and starts, and that
    account stays a donor."""
    path = tmp_path / "bootstrap.db"
    shutil.copy(template_db, path)
    plain = settings.with_(
        database_url=f"sqlite:///{path}", admin_email=None, admin_password=None
    )
    with _app(plain) as client:
        squatter = GQL(client).ok(
            f.REGISTER,
            {"email": "ops@example.org", "password": "correct horse", "name": "O"},
        )["register"]["token"]
    ops = plain.with_(admin_email="ops@example.org", admin_password="operator's own")
    with caplog.at_level(logging.WARNING, logger="careforall"), _app(ops) as client:
        gql = GQL(client)
        assert gql.ok(ME, token=squatter)["me"]["role"] == "DONOR"
        login = {"email": "ops@example.org", "password": "operator's own"}
        assert gql.code(f.LOGIN, login) == "UNAUTHENTICATED"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not promoted" in r.getMessage() for r in warnings), warnings

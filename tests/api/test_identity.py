"""Identity over HTTP: accounts, anonymous sessions, tokens, email privacy and
the merge of an anonymous session's donations into an account."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from tests import factories as f
from tests.helpers.api import ADMIN_EMAIL, GQL

ME = "{ me { id email name role createdAt } }"
MY_DONATIONS = """
query($first: Int, $after: String) {
  myDonations(first: $first, after: $after) {
    edges { cursor node { id amountCents status } }
    pageInfo { hasNextPage endCursor }
  }
}"""
CAMPAIGN_OWNER = "query($id: ID!) { campaign(id: $id) { owner { id name } } }"
CAMPAIGN_OWNER_EMAIL = (
    "query($id: ID!) { campaign(id: $id) { owner { id name email } } }"
)
TYPE_FIELDS = "query($name: String!) { __type(name: $name) { fields { name } } }"
USER_RETURNING_FIELDS = """
{ __schema { types { name kind fields {
  name type { name kind ofType { name kind ofType { name } } }
} } } }"""


def donation_ids(gql: GQL, token: str) -> list[str]:
    edges = gql.ok(MY_DONATIONS, {"first": 100}, token)["myDonations"]["edges"]
    return [e["node"]["id"] for e in edges]


def secret_of(client: TestClient) -> str:
    secret: str = client.app.state.runtime.keys.secret  # type: ignore[attr-defined]
    return secret


# --- register, login, anonymous sessions ------------------------------------------


def test_register_returns_a_token_and_the_new_user(gql: GQL) -> None:
    data = gql.ok(
        f.REGISTER,
        {"email": "  Dana@Example.ORG ", "password": "correct horse", "name": " Dana "},
    )["register"]
    assert data["anonymous"] is False
    assert data["token"]
    assert data["user"]["email"] == "dana@example.org"  # normalised
    assert data["user"]["name"] == "Dana"
    assert data["user"]["role"] == "DONOR"
    me = gql.ok(ME, token=data["token"])["me"]
    assert me["id"] == data["user"]["id"]
    assert me["email"] == "dana@example.org"


def test_login_returns_a_token_for_the_same_user(gql: GQL) -> None:
    account = f.register(gql, name="Lee")
    data = gql.ok(
        f.LOGIN, {"email": account.email.upper(), "password": "correct horse"}
    )["login"]
    assert data["anonymous"] is False
    assert data["user"]["id"] == account.id
    assert data["user"]["role"] == "DONOR"
    assert gql.ok(ME, token=data["token"])["me"]["id"] == account.id


def test_admin_logs_in_with_the_admin_role(gql: GQL) -> None:
    admin = f.admin(gql)
    me = gql.ok(ME, token=admin.token)["me"]
    assert me["role"] == "ADMIN"
    assert me["email"] == ADMIN_EMAIL


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("known", "wrong password"),
        ("nobody@example.org", "correct horse"),
        ("not-an-email", "x"),
    ],
)
def test_login_refuses_wrong_credentials_without_saying_which(
    gql: GQL, email: str, password: str
) -> None:
    account = f.register(gql)
    body = gql(
        f.LOGIN,
        {"email": account.email if email == "known" else email, "password": password},
    )
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert body["errors"][0]["message"] == "The email or password is not right."
    assert body["data"] is None


@pytest.mark.parametrize(
    ("variables", "word"),
    [
        ({"email": "not-an-email", "password": "correct horse", "name": "A"}, "email"),
        ({"email": "a@example.org", "password": "short", "name": "A"}, "password"),
        (
            {"email": "a@example.org", "password": "correct horse", "name": "   "},
            "name",
        ),
    ],
)
def test_register_refuses_bad_input_with_a_message(
    gql: GQL, variables: dict[str, Any], word: str
) -> None:
    body = gql(f.REGISTER, variables)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert word in error["message"].lower()


def test_register_refuses_an_email_already_taken(gql: GQL) -> None:
    account = f.register(gql)
    code = gql.code(
        f.REGISTER,
        {"email": account.email.upper(), "password": "another pass", "name": "B"},
    )
    assert code == "BAD_USER_INPUT"
    # The first account's password still works: nothing was overwritten.
    gql.ok(f.LOGIN, {"email": account.email, "password": "correct horse"})


def test_anonymous_session_has_a_token_and_no_user(gql: GQL) -> None:
    data = gql.ok(f.ANON)["startAnonymousSession"]
    assert data["anonymous"] is True
    assert data["user"] is None
    assert data["token"]
    other = gql.ok(f.ANON)["startAnonymousSession"]
    assert other["token"] != data["token"]


# --- me and tokens -----------------------------------------------------------------


def test_me_is_null_without_a_token_and_for_an_anonymous_session(gql: GQL) -> None:
    assert gql.ok(ME) == {"me": None}
    assert gql.ok(ME, token=f.anonymous(gql)) == {"me": None}


def _expired_user_token(client: TestClient, user_id: str) -> str:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "kind": "user",
        "role": "DONOR",
        "iat": now - 7200,
        "exp": now - 3600,
    }
    return jwt.encode(claims, secret_of(client), algorithm="HS256")


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda client, uid: "garbage", id="garbage"),
        pytest.param(lambda client, uid: "a.b.c", id="three-dots"),
        pytest.param(
            lambda client, uid: jwt.encode(
                {
                    "sub": uid,
                    "kind": "user",
                    "role": "DONOR",
                    "exp": int(time.time()) + 600,
                },
                "someone else's secret that is long enough",
                algorithm="HS256",
            ),
            id="other-secret",
        ),
        pytest.param(
            lambda client, uid: jwt.encode(
                {
                    "sub": uid,
                    "kind": "user",
                    "role": "ADMIN",
                    "exp": int(time.time()) + 600,
                },
                "",
                algorithm="none",
            ),
            id="alg-none",
        ),
        pytest.param(
            lambda client, uid: jwt.encode(
                {"sub": uid, "kind": "robot", "exp": int(time.time()) + 600},
                secret_of(client),
                algorithm="HS256",
            ),
            id="unknown-kind",
        ),
        pytest.param(_expired_user_token, id="expired"),
    ],
)
def test_a_token_that_is_not_valid_is_refused(
    gql: GQL, client: TestClient, make_token: Callable[[TestClient, str], str]
) -> None:
    account = f.register(gql)
    token = make_token(client, account.id)
    body = gql(ME, token=token)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "sign in" in error["message"]
    assert body["data"] == {"me": None}
    # Acting with it is refused as well, not downgraded to "no token".
    assert gql.code(MY_DONATIONS, {"first": 5}, token) == "UNAUTHENTICATED"


def test_an_expired_token_says_it_expired(gql: GQL, client: TestClient) -> None:
    account = f.register(gql)
    body = gql(ME, token=_expired_user_token(client, account.id))
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "expired" in body["errors"][0]["message"]


def test_a_forged_admin_role_on_a_donor_token_needs_the_secret(
    gql: GQL, client: TestClient
) -> None:
    """Only the server's secret makes a token: the role claim is what it signed."""
    donor = f.register(gql)
    claims = jwt.decode(donor.token, options={"verify_signature": False})
    forged = jwt.encode(
        claims | {"role": "ADMIN"},
        "not the secret, but a long enough one for HS256",
        algorithm="HS256",
    )
    assert gql.code(ME, token=forged) == "UNAUTHENTICATED"


# --- email privacy -----------------------------------------------------------------


def test_email_is_seen_by_its_owner_only(gql: GQL) -> None:
    organiser = f.register(gql, name="Olive Organiser")
    campaign = f.campaign(gql, organiser.token)
    donor = f.register(gql)
    assert gql.ok(ME, token=organiser.token)["me"]["email"] == organiser.email
    assert gql.ok(ME, token=donor.token)["me"]["email"] == donor.email
    for token in (None, donor.token, f.anonymous(gql)):
        owner = gql.ok(CAMPAIGN_OWNER, {"id": campaign["id"]}, token)["campaign"][
            "owner"
        ]
        assert owner == {"id": organiser.id, "name": "Olive Organiser"}


def test_campaign_owner_has_no_email_field(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    body = gql(CAMPAIGN_OWNER_EMAIL, {"id": campaign["id"]}, organiser.token)
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "data" not in body or body["data"] is None
    assert organiser.email not in str(body)
    fields = gql.ok(TYPE_FIELDS, {"name": "PublicProfile"})["__type"]["fields"]
    assert {x["name"] for x in fields} == {"id", "name"}


def _named(type_ref: dict[str, Any] | None) -> str | None:
    while type_ref is not None and type_ref.get("name") is None:
        type_ref = type_ref.get("ofType")
    return None if type_ref is None else type_ref["name"]


def test_user_type_is_reachable_only_through_me_and_auth_payloads(gql: GQL) -> None:
    """A `User` (with its email) is only ever the caller's own record."""
    types = gql.ok(USER_RETURNING_FIELDS)["__schema"]["types"]
    paths = {
        f"{t['name']}.{field['name']}"
        for t in types
        if not t["name"].startswith("__")
        for field in t["fields"] or []
        if _named(field["type"]) == "User"
    }
    # updateProfile answers the caller's own record; verifyEmail that of the
    # account whose link (mailed to its owner) was opened.
    assert paths == {
        "Query.me",
        "AuthPayload.user",
        "Mutation.updateProfile",
        "Mutation.verifyEmail",
    }


# --- anonymous donations follow the donor into an account --------------------------


def test_register_with_anonymous_token_moves_its_pledges_to_the_account(
    gql: GQL,
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    guest = f.anonymous(gql)
    first = f.pledge(gql, guest, campaign["id"], amount=1000)
    second = f.pledge(gql, guest, campaign["id"], amount=2000)
    assert donation_ids(gql, guest) == [second["id"], first["id"]]

    account = f.register(gql, anon=guest)

    assert donation_ids(gql, account.token) == [second["id"], first["id"]]
    assert donation_ids(gql, guest) == []
    assert (
        gql.ok(f.PLEDGE, {"id": first["id"]}, account.token)["pledge"]["amountCents"]
        == 1000
    )
    # Moved, not shared: the session no longer owns them.
    assert gql.code(f.PLEDGE, {"id": first["id"]}, guest) == "NOT_FOUND"


def test_login_with_anonymous_token_adds_its_pledges_to_the_account(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    account = f.register(gql)
    own = f.pledge(gql, account.token, campaign["id"], amount=500)
    guest = f.anonymous(gql)
    guest_pledge = f.pledge(gql, guest, campaign["id"], amount=700)
    assert donation_ids(gql, account.token) == [own["id"]]
    assert donation_ids(gql, guest) == [guest_pledge["id"]]

    data = gql.ok(
        f.LOGIN, {"email": account.email, "password": "correct horse", "anon": guest}
    )
    token = data["login"]["token"]

    assert donation_ids(gql, token) == [guest_pledge["id"], own["id"]]
    assert donation_ids(gql, account.token) == [guest_pledge["id"], own["id"]]
    assert donation_ids(gql, guest) == []
    # The moved pledge can still be paid by its new owner.
    paid = gql.ok(f.AUTHORIZE, {"id": guest_pledge["id"], "pm": "pm_card_ok"}, token)
    assert paid["authorizePayment"]["status"] in ("AUTHORIZED", "CAPTURED")


def test_a_claimed_session_is_not_claimed_again_by_someone_else(gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    guest = f.anonymous(gql)
    gift = f.pledge(gql, guest, campaign["id"])
    first_owner = f.register(gql, anon=guest)
    second = f.register(gql)
    gql.ok(f.LOGIN, {"email": second.email, "password": "correct horse", "anon": guest})
    assert donation_ids(gql, first_owner.token) == [gift["id"]]
    assert donation_ids(gql, second.token) == []


def test_later_pledges_of_a_claimed_session_are_moved_on_the_next_login(
    gql: GQL,
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    guest = f.anonymous(gql)
    account = f.register(gql, anon=guest)
    later = f.pledge(gql, guest, campaign["id"])
    assert donation_ids(gql, guest) == [later["id"]]
    gql.ok(
        f.LOGIN, {"email": account.email, "password": "correct horse", "anon": guest}
    )
    assert donation_ids(gql, account.token) == [later["id"]]
    assert donation_ids(gql, guest) == []


@pytest.mark.parametrize("kind", ["garbage", "user-token"])
def test_register_with_a_bad_anonymous_token_changes_nothing(
    gql: GQL, kind: str
) -> None:
    other = f.register(gql)
    anon = "garbage" if kind == "garbage" else other.token
    email = f"{f.unique('user')}@example.org"
    variables = {"email": email, "password": "correct horse", "name": "N", "anon": anon}
    body = gql(f.REGISTER, variables)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "anonymousToken" in body["errors"][0]["message"]
    # No account was made: the same email can still register.
    assert (
        gql.ok(f.REGISTER, variables | {"anon": None})["register"]["user"]["email"]
        == email
    )


def test_login_with_a_bad_anonymous_token_is_refused(gql: GQL) -> None:
    account = f.register(gql)
    code = gql.code(
        f.LOGIN, {"email": account.email, "password": "correct horse", "anon": "x.y.z"}
    )
    assert code == "BAD_USER_INPUT"

"""updateProfile and deleteAccount over HTTP: errors with the contract's codes,
every token of a deleted account refused at once, its gifts still counted and
its campaign still shown under "Deleted account"."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests import factories as f
from tests.helpers.api import ADMIN_PASSWORD, GQL
from tests.helpers.outbox import settled
from tests.helpers.waiting import wait_until

ME = "{ me { id name email emailVerified } }"
UPDATE = """
mutation($name: String, $email: String) {
  updateProfile(name: $name, email: $email) { id name email emailVerified }
}"""
DELETE = "mutation($password: String!) { deleteAccount(password: $password) }"
CAMPAIGN = "query($id: ID!) { campaign(id: $id) { id owner { id name } } }"


def test_update_profile_changes_the_fields_given(gql: GQL) -> None:
    account = f.register(gql, name="Dana")
    changed = gql.ok(UPDATE, {"name": "Dana D."}, account.token)["updateProfile"]
    assert (changed["name"], changed["email"]) == ("Dana D.", account.email)
    new = f"{f.unique('moved')}@Example.org"
    changed = gql.ok(UPDATE, {"email": new}, account.token)["updateProfile"]
    assert changed == {
        "id": account.id,
        "name": "Dana D.",
        "email": new.lower(),
        "emailVerified": False,
    }
    other = f.register(gql)
    assert gql.code(UPDATE, {"email": other.email}, account.token) == "BAD_USER_INPUT"
    assert gql.code(UPDATE, {"email": "no"}, account.token) == "BAD_USER_INPUT"
    assert gql.code(UPDATE, {"name": "x"}) == "UNAUTHENTICATED"
    assert gql.ok(ME, token=account.token)["me"]["email"] == new.lower()


def test_a_deleted_account_is_gone_and_its_gifts_stay(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql, name="Olga")
    campaign = f.campaign(gql, organiser.token)
    donor = f.register(gql)
    other_token = gql.ok(f.LOGIN, {"email": donor.email, "password": "correct horse"})[
        "login"
    ]["token"]
    pledge = f.pledge(gql, donor.token, campaign["id"], amount=4200)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    wait_until(lambda: settled(runtime.db))
    assert f.totals(gql, campaign["id"]) == (4200, 1)

    assert gql.code(DELETE, {"password": "wrong"}, donor.token) == "BAD_USER_INPUT"
    assert gql.code(DELETE, {"password": "correct horse"}) == "UNAUTHENTICATED"
    assert gql.ok(DELETE, {"password": "correct horse"}, donor.token)["deleteAccount"]
    for token in (donor.token, other_token):
        assert gql.code(ME, token=token) == "UNAUTHENTICATED"
    assert gql.code(f.LOGIN, {"email": donor.email, "password": "correct horse"})
    assert f.totals(gql, campaign["id"]) == (4200, 1)

    assert gql.ok(DELETE, {"password": "correct horse"}, organiser.token)
    shown = gql.ok(CAMPAIGN, {"id": campaign["id"]})["campaign"]
    assert shown["owner"] == {"id": organiser.id, "name": "Deleted account"}


def test_the_last_admin_account_stays(gql: GQL) -> None:
    admin = f.admin(gql)
    assert gql.code(DELETE, {"password": ADMIN_PASSWORD}, admin.token) == "FORBIDDEN"
    gql.ok(ME, token=admin.token)

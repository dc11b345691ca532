"""Who may call what: every root field of the served schema, for each kind of caller.

Each field has an entry in MATRIX with what each caller gets: data, null, or the
exact error code. A field added to the schema without an entry fails
`test_every_root_field_has_an_entry`. Targets are made fresh for each call, and a
refused mutation is checked to have changed nothing. Nobody but its donor (and an
admin, for reading) gets at a donor's pledge, and to anyone else it answers as a
pledge that does not exist.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlmodel import col, func, select
from starlette.testclient import TestClient

from careforall.api.schema import schema
from careforall.app import create_app
from careforall.models import Mail, Notification, OutboxEvent
from careforall.services import passwords
from careforall.settings import Settings
from tests import factories as f
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD, GQL
from tests.helpers.waiting import wait_until

CALLERS = ("nobody", "anon_a", "anon_b", "donor", "organiser", "admin")
ANONYMOUS = ("anon_a", "anon_b")
USERS = ("donor", "organiser", "admin")

OK, NULL = "data", "null"
UNAUTHENTICATED, FORBIDDEN = "UNAUTHENTICATED", "FORBIDDEN"
NOT_FOUND = "NOT_FOUND"
BAD_USER_INPUT = "BAD_USER_INPUT"


@dataclass
class World:
    """Six callers, an organiser's campaign, and one pledge each for the donor
    and anonymous session A. `owner` records who made every pledge seen here."""

    client: TestClient
    gql: GQL
    tokens: dict[str, str | None]
    user_ids: dict[str, str]
    campaign_id: str
    pledges: dict[str, str]
    owner: dict[str, str] = field(default_factory=dict)
    stand_ins: dict[str, str] = field(default_factory=dict)  # token -> user id

    def token(self, caller: str) -> str | None:
        return self.tokens[caller]

    def new_pledge(self, caller: str) -> dict[str, Any]:
        token = self.token(caller)
        assert token is not None
        pledge = f.pledge(self.gql, token, self.campaign_id)
        self.owner[pledge["id"]] = caller
        return pledge

    def status(self, pledge_id: str) -> str:
        data = self.gql.ok(f.PLEDGE, {"id": pledge_id}, self.token("admin"))
        status: str = data["pledge"]["status"]
        return status

    def authorized(self, caller: str) -> dict[str, Any]:
        pledge = self.new_pledge(caller)
        self.gql.ok(
            f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, self.token(caller)
        )
        return pledge

    def captured(self, caller: str) -> dict[str, Any]:
        pledge = self.authorized(caller)
        self.gql.ok(f.CAPTURE, {"id": pledge["id"]}, self.token("admin"))
        return pledge


@pytest.fixture(scope="module")
def world(
    template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One app for the module (auto_capture off: AUTHORIZED stays AUTHORIZED)."""
    path = tmp_path_factory.mktemp("matrix") / "careforall.db"
    shutil.copy(template_db, path)
    settings = Settings(
        database_url=f"sqlite:///{path}",
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        auto_capture=False,
        rate_limits=False,
        campaign_review="off",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            passwords,
            "_HASHER",
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
        )
        with TestClient(create_app(settings)) as client:
            gql = GQL(client)
            donor, organiser, admin = f.register(gql), f.register(gql), f.admin(gql)
            tokens: dict[str, str | None] = {
                "nobody": None,
                "anon_a": f.anonymous(gql),
                "anon_b": f.anonymous(gql),
                "donor": donor.token,
                "organiser": organiser.token,
                "admin": admin.token,
            }
            campaign = f.campaign(gql, organiser.token)
            w = World(
                client=client,
                gql=gql,
                tokens=tokens,
                user_ids={
                    "donor": donor.id,
                    "organiser": organiser.id,
                    "admin": admin.id,
                },
                campaign_id=campaign["id"],
                pledges={},
            )
            w.pledges = {c: w.new_pledge(c)["id"] for c in ("donor", "anon_a")}
            yield w


# --- what each caller gets ---------------------------------------------------------


def everyone(outcome: str = OK) -> dict[str, str]:
    return dict.fromkeys(CALLERS, outcome)


def with_a_token() -> dict[str, str]:
    return everyone() | {"nobody": UNAUTHENTICATED}


def signed_in() -> dict[str, str]:
    return with_a_token() | dict.fromkeys(ANONYMOUS, UNAUTHENTICATED)


def admin_only() -> dict[str, str]:
    return signed_in() | {"donor": FORBIDDEN, "organiser": FORBIDDEN}


def only(caller: str, *, and_admin: bool, others: str = FORBIDDEN) -> dict[str, str]:
    """Its donor (and an admin when `and_admin`); `others` for other tokens."""
    outcome = with_a_token() | dict.fromkeys(CALLERS[1:], others) | {caller: OK}
    return outcome | ({"admin": OK} if and_admin else {})


Vars = dict[str, Any]
Check = Callable[[World, Any, Vars, str], None]
After = Callable[[World, Vars, bool], None]


def _nothing(world: World, value: Any, variables: Vars, caller: str) -> None:
    return None


@dataclass(frozen=True)
class Case:
    document: str
    expect: dict[str, str]
    prepare: Callable[[World], Vars] = lambda world: {}
    check: Check = _nothing  # the data, when the call succeeds
    after: After | None = None  # the state after the call, allowed or refused
    name: str = ""
    # For fields that end the caller's tokens: a fresh caller of the same kind
    # (its token) stands in, so the world's callers keep theirs.
    stand_in: Callable[[World, str], str | None] | None = None


# --- checks ----------------------------------------------------------------------


def _own_user(world: World, value: Any, variables: Vars, caller: str) -> None:
    assert value["id"] == world.user_ids[caller]


def _same_id(world: World, value: Any, variables: Vars, caller: str) -> None:
    assert value["id"] == variables["id"]


def _only_own_donations(world: World, value: Any, variables: Vars, caller: str) -> None:
    ids = [edge["node"]["id"] for edge in value["edges"]]
    assert {world.owner.get(i) for i in ids} <= {caller}, (caller, ids)
    if caller in world.pledges:
        assert world.pledges[caller] in ids


def _only_own_campaigns(world: World, value: Any, variables: Vars, caller: str) -> None:
    owners = {edge["node"]["owner"]["id"] for edge in value["edges"]}
    assert owners <= {world.user_ids[caller]}, (caller, owners)
    if caller == "organiser":
        assert world.campaign_id in {edge["node"]["id"] for edge in value["edges"]}


def _every_pledge(world: World, value: Any, variables: Vars, caller: str) -> None:
    ids = {edge["node"]["id"] for edge in value["edges"]}
    assert set(world.pledges.values()) <= ids


def _status_is(status: str) -> Check:
    def check(world: World, value: Any, variables: Vars, caller: str) -> None:
        assert value["status"] == status

    return check


def _pledge_moved(allowed_to: str, otherwise: str) -> After:
    def after(world: World, variables: Vars, allowed: bool) -> None:
        pledge_id = variables.get("id") or variables["pledgeId"]
        assert world.status(pledge_id) == (allowed_to if allowed else otherwise)

    return after


def _new_pledge_recorded(
    world: World, value: Any, variables: Vars, caller: str
) -> None:
    assert value["status"] == "PENDING"
    world.owner[value["id"]] = caller


def _campaign_owned(world: World, value: Any, variables: Vars, caller: str) -> None:
    assert value["owner"]["id"] == world.user_ids[caller]


def _campaign_status(world: World, variables: Vars, allowed: bool) -> None:
    data = world.gql.ok(
        "query($id: ID!) { campaign(id: $id) { status } }", {"id": variables["id"]}
    )
    assert data["campaign"]["status"] == ("PAUSED" if allowed else "ACTIVE")


def _same_email(world: World, value: Any, variables: Vars, caller: str) -> None:
    assert value["token"] and value["user"]["email"] == variables["email"]


def _anonymous(world: World, value: Any, variables: Vars, caller: str) -> None:
    assert value["token"] and value["anonymous"] is True and value["user"] is None


def _own_preferences_changed(
    world: World, value: Any, variables: Vars, caller: str
) -> None:
    assert value == {"campaignUpdates": False, "donationDigest": True}


def _is_zero(world: World, value: Any, variables: Vars, caller: str) -> None:
    assert value == 0


def _nothing_repaired(world: World, value: Any, variables: Vars, caller: str) -> None:
    assert value == []


# --- targets made fresh for each call ----------------------------------------------


def _fresh_account(world: World) -> Vars:
    account = f.register(world.gql)
    return {"email": account.email, "password": "correct horse"}


def _new_email(world: World) -> Vars:
    return {"email": f"{f.unique('new')}@example.org", "password": "correct horse"}


def _campaign_input(world: World) -> Vars:
    return {
        "input": {
            "title": f.unique("Care for"),
            "description": "d",
            "category": "surgery",
            "goalCents": 10_000,
        }
    }


def _pledge_input(world: World) -> Vars:
    return {
        "input": {
            "campaignId": world.campaign_id,
            "amountCents": 1000,
            "idempotencyKey": f.unique("key"),
        }
    }


def _fresh_campaign(world: World) -> Vars:
    token = world.token("organiser")
    assert token is not None
    return {"id": f.campaign(world.gql, token)["id"], "status": "PAUSED"}


def _campaign_in_review(world: World) -> Vars:
    """A fresh campaign IN_REVIEW (the world's app starts them ACTIVE)."""
    campaign_id = _fresh_campaign(world)["id"]
    runtime = world.client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE campaigns SET status = 'IN_REVIEW' WHERE id = :id"),
            {"id": campaign_id},
        )
    return {"id": campaign_id}


def _campaign_is(allowed_to: str, otherwise: str) -> After:
    def after(world: World, variables: Vars, allowed: bool) -> None:
        admin = world.token("admin")
        data = world.gql.ok(
            "query($id: ID!) { campaign(id: $id) { status } }",
            {"id": variables["id"]},
            admin,
        )
        assert data["campaign"]["status"] == (allowed_to if allowed else otherwise)

    return after


def _campaign_title(world: World, variables: Vars, allowed: bool) -> None:
    data = world.gql.ok(
        "query($id: ID!) { campaign(id: $id) { title } }", {"id": variables["id"]}
    )
    assert (data["campaign"]["title"] == "Edited") is allowed


def _campaign_holding_money(world: World) -> Vars:
    """A fresh campaign with a captured donation of 1,000 counted in its totals."""
    campaign_id = _fresh_campaign(world)["id"]
    token = world.token("donor")
    assert token is not None
    pledge = f.pledge(world.gql, token, campaign_id, 1_000)
    world.gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, token)
    world.gql.ok(f.CAPTURE, {"id": pledge["id"]}, world.token("admin"))
    wait_until(lambda: f.totals(world.gql, campaign_id)[0] == 1_000)
    return {"id": campaign_id}


def _paid_out(world: World, variables: Vars, allowed: bool) -> None:
    data = world.gql.ok(
        "query($id: ID!) { campaign(id: $id) { paidOutCents } }",
        {"id": variables["id"]},
    )
    assert data["campaign"]["paidOutCents"] == (500 if allowed else 0)


def _updates_posted(world: World, variables: Vars, allowed: bool) -> None:
    data = world.gql.ok(
        "query($id: ID!) { campaign(id: $id) { updates { edges { cursor } } } }",
        {"id": variables["id"]},
    )
    assert len(data["campaign"]["updates"]["edges"]) == (1 if allowed else 0)


def _pending_of(caller: str) -> Callable[[World], Vars]:
    return lambda world: {
        "pledgeId": world.new_pledge(caller)["id"],
        "pm": "pm_card_ok",
    }


def _first_outbox_event(world: World) -> Vars:
    runtime = world.client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.read() as session:
        first = session.exec(select(func.min(col(OutboxEvent.id)))).one()
    return {"id": str(first)}


def _notification_rows(world: World, ids: list[str]) -> list[Notification]:
    runtime = world.client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.read() as session:
        return list(
            session.exec(select(Notification).where(col(Notification.id).in_(ids)))
        )


def _only_own_notifications(
    world: World, value: Any, variables: Vars, caller: str
) -> None:
    ids = [edge["node"]["id"] for edge in value["edges"]]
    for row in _notification_rows(world, ids):
        assert row.recipient_user_id == world.user_ids.get(caller), (caller, row)


def _donors_notification(world: World) -> Vars:
    """A fresh notification of the donor's: a capture of one of their pledges."""
    pledge_id = world.captured("donor")["id"]
    runtime = world.client.app.state.runtime  # type: ignore[attr-defined]

    def find() -> str | None:
        with runtime.db.read() as session:
            found: str | None = session.exec(
                select(Notification.id).where(Notification.pledge_id == pledge_id)
            ).first()
        return found

    return {"ids": [wait_until(find)]}


def _donors_kept_mail(world: World) -> Vars:
    """A fresh mail kept without SMTP: the receipt of a donor's capture."""
    pledge_id = world.captured("donor")["id"]
    runtime = world.client.app.state.runtime  # type: ignore[attr-defined]

    def find() -> str | None:
        with runtime.db.read() as session:
            found = session.exec(
                select(Mail.id).where(Mail.cause_key == f"receipt:{pledge_id}")
            ).first()
        return None if found is None else str(found)

    return {"id": wait_until(find)}


def _is_one(world: World, value: Any, variables: Vars, caller: str) -> None:
    assert value == 1


def _notification_read(world: World, variables: Vars, allowed: bool) -> None:
    (row,) = _notification_rows(world, variables["ids"])
    assert (row.read_at is not None) == allowed


def _stand_in(world: World, caller: str) -> str | None:
    """A new caller of the same kind: no token, a new anonymous session, a new
    account (with an admin's role for the admin)."""
    if caller == "nobody":
        return None
    if caller in ANONYMOUS:
        return f.anonymous(world.gql)
    account = f.register(world.gql)
    if caller == "admin":
        runtime = world.client.app.state.runtime  # type: ignore[attr-defined]
        with runtime.db.engine.begin() as conn:
            conn.execute(
                text("UPDATE users SET role = 'ADMIN' WHERE id = :id"),
                {"id": account.id},
            )
    world.stand_ins[account.token] = account.id
    return account.token


def _token_ended(world: World, variables: Vars, allowed: bool) -> None:
    token = variables["_token"]
    if token is not None:
        code = world.gql.code("{ myDonations { edges { cursor } } }", token=token)
        assert code == "UNAUTHENTICATED"


def _changed_password(world: World, variables: Vars, allowed: bool) -> None:
    token = variables["_token"]
    if not allowed:
        if token is not None and token in world.stand_ins:
            world.gql.ok("{ me { id } }", token=token)  # still works
        return
    assert world.gql.code("{ me { id } }", token=token) == "UNAUTHENTICATED"


def _deleted(world: World, variables: Vars, allowed: bool) -> None:
    token = variables["_token"]
    if token is None or token not in world.stand_ins:
        return
    code = world.gql("{ me { id } }", token=token).get("errors")
    assert bool(code) == allowed


def _fresh_token_of(world: World, value: Any, variables: Vars, caller: str) -> None:
    me = world.gql.ok("{ me { id } }", token=value["token"])["me"]
    assert me["id"] == world.stand_ins[variables["_token"]]


# --- the matrix ----------------------------------------------------------------------

PLEDGE_QUERY = "query($id: ID!) { pledge(id: $id) { id status } }"
CONNECTION_IDS = "edges { node { id } } pageInfo { hasNextPage }"

PLAN_FIELDS = "id status amountCents charges { edges { node { id } } }"


def _plan_input(world: World) -> Vars:
    return {
        "input": {
            "campaignId": world.campaign_id,
            "amountCents": 1_500,
            "paymentMethod": "pm_card_ok",
            "idempotencyKey": f.unique("plan"),
        }
    }


def _donors_plan(world: World) -> Vars:
    data = world.gql.ok(
        "mutation($input: RecurringDonationInput!) {"
        " createRecurringDonation(input: $input) { id } }",
        _plan_input(world),
        world.token("donor"),
    )
    return {"id": data["createRecurringDonation"]["id"]}


def _plan_status(world: World, plan_id: str) -> str:
    data = world.gql.ok(
        "{ myRecurringDonations { id status } }", None, world.token("donor")
    )
    [status] = [p["status"] for p in data["myRecurringDonations"] if p["id"] == plan_id]
    return str(status)


def _plan_is(allowed_to: str) -> After:
    def after(world: World, variables: Vars, allowed: bool) -> None:
        assert _plan_status(world, variables["id"]) == (
            allowed_to if allowed else "ACTIVE"
        )

    return after


def _only_own_plans(world: World, value: Any, variables: Vars, caller: str) -> None:
    for plan in value:
        for edge in plan["charges"]["edges"]:
            assert world.owner.get(edge["node"]["id"], caller) == caller


def _plan_charged(world: World, value: Any, variables: Vars, caller: str) -> None:
    assert value["status"] == "ACTIVE"
    for edge in value["charges"]["edges"]:
        world.owner[edge["node"]["id"]] = caller


def _donors_plan_only(*, and_admin: bool) -> dict[str, str]:
    """Its donor (and an admin when `and_admin`; else FORBIDDEN); another user's
    answers as a missing plan; anonymous sessions hold no plans."""
    admin = OK if and_admin else FORBIDDEN
    return (
        only("donor", and_admin=False, others=NOT_FOUND)
        | dict.fromkeys(ANONYMOUS, UNAUTHENTICATED)
        | {"admin": admin}
    )


MATRIX: dict[str, list[Case]] = {
    "Query.me": [
        Case(
            "{ me { id } }",
            everyone(OK) | {"nobody": NULL, "anon_a": NULL, "anon_b": NULL},
            check=_own_user,
        )
    ],
    "Query.campaigns": [Case(f"{{ campaigns {{ {CONNECTION_IDS} }} }}", everyone())],
    "Query.myCampaigns": [
        Case(
            "{ myCampaigns(first: 100) { edges { node { id owner { id } } } } }",
            signed_in(),
            check=_only_own_campaigns,
        )
    ],
    "Query.campaign": [
        Case(
            "query($id: ID!) { campaign(id: $id) { id } }",
            everyone(),
            prepare=lambda w: {"id": w.campaign_id},
            check=_same_id,
        )
    ],
    "Query.version": [Case("{ version }", everyone())],
    "Query.organisation": [Case("{ organisation { name address taxId } }", everyone())],
    "Query.categories": [Case("{ categories }", everyone())],
    "Query.paymentProvider": [
        Case("{ paymentProvider { name simulated notice } }", everyone())
    ],
    "Query.campaignTotals": [
        Case(
            "query($id: ID!) { campaignTotals(campaignId: $id) { campaignId } }",
            everyone(),
            prepare=lambda w: {"id": w.campaign_id},
        )
    ],
    "Query.pledge": [
        Case(
            PLEDGE_QUERY,
            # Another's pledge answers as a missing one (NOT_FOUND).
            only("donor", and_admin=True, others=NOT_FOUND),
            prepare=lambda w: {"id": w.pledges["donor"]},
            check=_same_id,
            name="donor's",
        ),
        Case(
            PLEDGE_QUERY,
            only("anon_a", and_admin=True, others=NOT_FOUND),
            prepare=lambda w: {"id": w.pledges["anon_a"]},
            check=_same_id,
            name="anonymous A's",
        ),
    ],
    "Query.myDonations": [
        Case(
            f"{{ myDonations(first: 100) {{ {CONNECTION_IDS} }} }}",
            with_a_token(),
            check=_only_own_donations,
        )
    ],
    "Query.adminStats": [Case("{ adminStats { deadLetters } }", admin_only())],
    "Query.adminPledges": [
        Case(
            f"{{ adminPledges(first: 100) {{ {CONNECTION_IDS} }} }}",
            admin_only(),
            check=_every_pledge,
        )
    ],
    "Query.deadLetters": [
        Case(f"{{ deadLetters {{ {CONNECTION_IDS} }} }}", admin_only())
    ],
    "Query.adminMails": [
        Case(f"{{ adminMails {{ {CONNECTION_IDS} }} }}", admin_only())
    ],
    "Query.webhookLog": [
        Case(f"{{ webhookLog {{ {CONNECTION_IDS} }} }}", admin_only())
    ],
    "Query.adminCampaignEdits": [
        Case(
            f"query($id: ID!) {{ adminCampaignEdits(campaignId: $id) {{"
            f" {CONNECTION_IDS} }} }}",
            admin_only(),
            prepare=lambda w: {"id": w.campaign_id},
        )
    ],
    "Query.adminReports": [
        Case(f"{{ adminReports {{ {CONNECTION_IDS} }} }}", admin_only())
    ],
    "Query.adminReviewQueue": [
        Case(
            "{ adminReviewQueue { edges { node { campaign { id } } } } }",
            admin_only(),
        )
    ],
    "Query.auditLog": [Case(f"{{ auditLog {{ {CONNECTION_IDS} }} }}", admin_only())],
    "Mutation.register": [
        Case(
            f.REGISTER,
            everyone(),
            prepare=lambda w: _new_email(w) | {"name": "New Person"},
            check=_same_email,
        )
    ],
    "Mutation.login": [
        Case(f.LOGIN, everyone(), prepare=_fresh_account, check=_same_email)
    ],
    "Mutation.startAnonymousSession": [Case(f.ANON, everyone(), check=_anonymous)],
    "Mutation.logout": [
        Case(
            "mutation { logout }",
            with_a_token(),
            stand_in=_stand_in,
            after=_token_ended,
        )
    ],
    "Mutation.changePassword": [
        Case(
            "mutation($current: String!, $new: String!) { changePassword("
            "currentPassword: $current, newPassword: $new) { token } }",
            signed_in(),
            prepare=lambda w: {"current": "correct horse", "new": "a fresh passphrase"},
            stand_in=_stand_in,
            check=_fresh_token_of,
            after=_changed_password,
        )
    ],
    "Mutation.requestPasswordReset": [
        Case(
            "mutation($email: String!) { requestPasswordReset(email: $email) }",
            everyone(),
            prepare=_new_email,
        )
    ],
    # A link's token is the only credential: whoever holds one may use it, and
    # a made-up one is refused alike for every caller.
    "Mutation.resetPassword": [
        Case(
            "mutation($token: String!) { resetPassword(token: $token, "
            'newPassword: "a fresh passphrase") { token } }',
            everyone(BAD_USER_INPUT),
            prepare=lambda w: {"token": "made-up-" + "x" * 35},
        )
    ],
    "Mutation.requestEmailVerification": [
        Case("mutation { requestEmailVerification }", signed_in())
    ],
    "Mutation.verifyEmail": [
        Case(
            "mutation($token: String!) { verifyEmail(token: $token) { id } }",
            everyone(BAD_USER_INPUT),
            prepare=lambda w: {"token": "made-up-" + "x" * 35},
        )
    ],
    "Mutation.updateProfile": [
        Case(
            'mutation { updateProfile(name: "Same Person") { id name } }',
            signed_in(),
            check=_own_user,
        )
    ],
    "Mutation.deleteAccount": [
        Case(
            'mutation { deleteAccount(password: "correct horse") }',
            signed_in(),
            stand_in=_stand_in,
            after=_deleted,
        )
    ],
    "Mutation.createCampaign": [
        Case(
            f.CREATE_CAMPAIGN,
            signed_in(),
            prepare=_campaign_input,
            check=_campaign_owned,
        )
    ],
    "Mutation.setCampaignStatus": [
        Case(
            "mutation($id: ID!, $status: CampaignStatus!) {"
            " setCampaignStatus(id: $id, status: $status) { id status } }",
            signed_in() | {"donor": FORBIDDEN, "organiser": OK, "admin": OK},
            prepare=_fresh_campaign,
            after=_campaign_status,
        )
    ],
    "Mutation.updateCampaign": [
        Case(
            'mutation($id: ID!) { updateCampaign(id: $id, input: {title: "Edited"})'
            " { title } }",
            signed_in() | {"donor": FORBIDDEN},
            prepare=lambda w: {"id": _fresh_campaign(w)["id"]},
            after=_campaign_title,
        )
    ],
    "Mutation.postCampaignUpdate": [
        Case(
            "mutation($id: ID!) { postCampaignUpdate(campaignId: $id, "
            'title: "News", body: "Surgery went well") { id } }',
            signed_in() | {"donor": FORBIDDEN, "admin": FORBIDDEN},
            prepare=lambda w: {"id": _fresh_campaign(w)["id"]},
            after=_updates_posted,
        )
    ],
    "Mutation.recordPayout": [
        Case(
            "mutation($id: ID!) { recordPayout(campaignId: $id, amountCents: 500, "
            'recipient: "City Hospital", reference: "INV-1") { amountCents } }',
            admin_only(),
            prepare=_campaign_holding_money,
            after=_paid_out,
        )
    ],
    "Mutation.reportCampaign": [
        Case(
            'mutation($id: ID!) { reportCampaign(id: $id, reason: "Fake") }',
            with_a_token(),
            prepare=lambda w: {"id": _fresh_campaign(w)["id"]},
        )
    ],
    "Mutation.reviewCampaign": [
        Case(
            "mutation($id: ID!) { reviewCampaign(id: $id, approve: true) { status } }",
            admin_only(),
            prepare=_campaign_in_review,
            check=_status_is("ACTIVE"),
            after=_campaign_is("ACTIVE", otherwise="IN_REVIEW"),
        )
    ],
    "Mutation.suspendCampaign": [
        Case(
            'mutation($id: ID!) { suspendCampaign(id: $id, note: "why") {'
            " status suspensionNote } }",
            admin_only(),
            prepare=lambda w: {"id": _fresh_campaign(w)["id"]},
            check=_status_is("SUSPENDED"),
            after=_campaign_is("SUSPENDED", otherwise="ACTIVE"),
        )
    ],
    "Mutation.createPledge": [
        Case(
            f.CREATE_PLEDGE,
            with_a_token(),
            prepare=_pledge_input,
            check=_new_pledge_recorded,
        )
    ],
    "Mutation.authorizePayment": [
        Case(
            "mutation($pledgeId: ID!, $pm: String!) { authorizePayment("
            "pledgeId: $pledgeId, paymentMethod: $pm) { id status } }",
            # An admin sees the pledge exists, but only its donor pays it.
            only(donor, and_admin=False, others=NOT_FOUND) | {"admin": FORBIDDEN},
            prepare=_pending_of(donor),
            check=_status_is("AUTHORIZED"),
            after=_pledge_moved("AUTHORIZED", otherwise="PENDING"),
            name=f"{donor}'s",
        )
        for donor in ("donor", "anon_a")
    ],
    # The world pays with the simulated provider, which takes no hosted
    # payments: the donor passes every check and is told so.
    **{
        f"Mutation.{field}": [
            Case(
                f"mutation($pledgeId: ID!) {{ {field}(pledgeId: $pledgeId) "
                f"{{ {answer} }} }}",
                only(donor, and_admin=False, others=NOT_FOUND)
                | {"admin": FORBIDDEN, donor: "BAD_USER_INPUT"},
                prepare=_pending_of(donor),
                after=_pledge_moved("PENDING", otherwise="PENDING"),
                name=f"{donor}'s",
            )
            for donor in ("donor", "anon_a")
        ]
        for field, answer in (
            ("startCheckout", "url"),
            ("startPaymentSheet", "clientSecret"),
        )
    },
    # A card saved for a recurring gift: anyone signed in, at a provider with
    # hosted pages (the world's simulated one has none: it says so).
    "Mutation.startCardSetup": [
        Case(
            "mutation($id: ID) { startCardSetup(campaignId: $id) { url } }",
            {
                caller: "BAD_USER_INPUT" if outcome == OK else outcome
                for caller, outcome in signed_in().items()
            },
            prepare=lambda w: {"id": w.campaign_id},
        )
    ],
    "Mutation.capturePayment": [
        Case(
            "mutation($id: ID!) { capturePayment(pledgeId: $id) { id status } }",
            admin_only(),
            prepare=lambda w: {"id": w.authorized("donor")["id"]},
            check=_status_is("CAPTURED"),
            after=_pledge_moved("CAPTURED", otherwise="AUTHORIZED"),
        )
    ],
    "Mutation.cancelPayment": [
        Case(
            "mutation($id: ID!) { cancelPayment(pledgeId: $id) { id status } }",
            admin_only(),
            prepare=lambda w: {"id": w.authorized("donor")["id"]},
            check=_status_is("FAILED"),
            after=_pledge_moved("FAILED", otherwise="AUTHORIZED"),
        )
    ],
    "Mutation.refundPayment": [
        Case(
            "mutation($id: ID!) { refundPayment(pledgeId: $id) { id status } }",
            admin_only(),
            prepare=lambda w: {"id": w.captured("donor")["id"]},
            check=_status_is("REFUNDED"),
            after=_pledge_moved("REFUNDED", otherwise="CAPTURED"),
        )
    ],
    "Mutation.replayDeadLetter": [
        Case(
            "mutation($id: ID!) { replayDeadLetter(id: $id) }",
            admin_only(),
            prepare=_first_outbox_event,
            check=_is_zero,  # delivered, not dead: nothing to replay
        )
    ],
    "Mutation.replayMail": [
        Case(
            "mutation($id: ID!) { replayMail(id: $id) }",
            admin_only(),
            prepare=_donors_kept_mail,
            check=_is_one,  # kept (no SMTP here): queued again
        )
    ],
    "Mutation.replayAllDeadLetters": [
        Case("mutation { replayAllDeadLetters }", admin_only(), check=_is_zero)
    ],
    "Mutation.reconcileTotals": [
        Case(
            "mutation { reconcileTotals { campaignId } }",
            admin_only(),
            check=_nothing_repaired,
        )
    ],
    "Query.notifications": [
        Case(
            f"{{ notifications(first: 100) {{ {CONNECTION_IDS} }} }}",
            with_a_token(),
            check=_only_own_notifications,
        )
    ],
    "Query.unreadNotificationCount": [
        Case("{ unreadNotificationCount }", with_a_token())
    ],
    "Query.mailPreferences": [
        Case("{ mailPreferences { donationDigest goalReached } }", signed_in())
    ],
    "Mutation.updateMailPreferences": [
        Case(
            "mutation { updateMailPreferences(input: {campaignUpdates: false}) {"
            " campaignUpdates donationDigest } }",
            signed_in(),
            check=_own_preferences_changed,
        )
    ],
    "Mutation.markNotificationsRead": [
        Case(
            "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) { marked } }",
            only("donor", and_admin=False),
            prepare=_donors_notification,
            after=_notification_read,
        )
    ],
    "Mutation.markAllNotificationsRead": [
        Case("mutation { markAllNotificationsRead { unreadCount } }", with_a_token())
    ],
    "Subscription.notificationUpdates": [
        Case("subscription { notificationUpdates { unreadCount } }", with_a_token())
    ],
    "Query.myRecurringDonations": [
        Case(
            f"{{ myRecurringDonations {{ {PLAN_FIELDS} }} }}",
            signed_in(),
            check=_only_own_plans,
        )
    ],
    "Query.myGivingSummary": [
        Case(
            "{ myGivingSummary(year: 2026) { year totals { currency } } }", signed_in()
        )
    ],
    "Query.campaignMonthlyGiving": [
        Case(
            "query($id: ID!) { campaignMonthlyGiving(campaignId: $id) {"
            " campaignId donors monthlyAmountCents } }",
            signed_in() | {"donor": FORBIDDEN},
            prepare=lambda w: {"id": w.campaign_id},
        )
    ],
    "Query.adminFailingRecurringDonations": [
        Case(
            f"{{ adminFailingRecurringDonations {{ {CONNECTION_IDS} }} }}",
            admin_only(),
        )
    ],
    "Mutation.createRecurringDonation": [
        Case(
            "mutation($input: RecurringDonationInput!) {"
            f" createRecurringDonation(input: $input) {{ {PLAN_FIELDS} }} }}",
            signed_in(),
            prepare=_plan_input,
            check=_plan_charged,
        )
    ],
    "Mutation.cancelRecurringDonation": [
        Case(
            "mutation($id: ID!) { cancelRecurringDonation(id: $id) { id status } }",
            _donors_plan_only(and_admin=True),
            prepare=_donors_plan,
            after=_plan_is("CANCELLED"),
        )
    ],
    "Mutation.pauseRecurringDonation": [
        Case(
            "mutation($id: ID!) { pauseRecurringDonation(id: $id) { id status } }",
            _donors_plan_only(and_admin=False),
            prepare=_donors_plan,
            after=_plan_is("PAUSED"),
        )
    ],
    "Mutation.resumeRecurringDonation": [
        Case(
            "mutation($id: ID!) { resumeRecurringDonation(id: $id) { id status } }",
            _donors_plan_only(and_admin=False),
            prepare=_donors_plan,
            after=_plan_is("ACTIVE"),
        )
    ],
    "Mutation.updateRecurringDonation": [
        Case(
            "mutation($id: ID!) { updateRecurringDonation(id: $id,"
            " input: {amountCents: 2000}) { id amountCents } }",
            _donors_plan_only(and_admin=False),
            prepare=_donors_plan,
            after=_plan_is("ACTIVE"),
        )
    ],
    "Subscription.campaignTotals": [
        Case(
            "subscription($id: ID!) { campaignTotals(campaignId: $id) { campaignId } }",
            everyone(),
            prepare=lambda w: {"id": w.campaign_id},
        )
    ],
}


def root_fields() -> set[str]:
    roots = (
        schema._schema.query_type,
        schema._schema.mutation_type,
        schema._schema.subscription_type,
    )
    return {f"{root.name}.{name}" for root in roots if root for name in root.fields}


def test_every_root_field_has_an_entry() -> None:
    assert root_fields() - MATRIX.keys() == set(), "add these fields to MATRIX"
    assert MATRIX.keys() - root_fields() == set(), "these fields are gone"


def test_every_entry_names_every_caller() -> None:
    for name, cases in MATRIX.items():
        for case in cases:
            assert set(case.expect) == set(CALLERS), name


# --- running a cell ------------------------------------------------------------------


def _subscribe(world: World, case: Case, variables: Vars, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with world.client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"], headers=headers
    ) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        payload = {"query": case.document, "variables": variables}
        ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
        message = ws.receive_json()
        ws.send_json({"id": "1", "type": "complete"})
    if message["type"] == "error":
        return {"errors": message["payload"]}
    return message["payload"]


CELLS = [
    pytest.param(
        name, case, caller, id=f"{name}{f'[{case.name}]' if case.name else ''}-{caller}"
    )
    for name, cases in MATRIX.items()
    for case in cases
    for caller in CALLERS
]


@pytest.mark.parametrize(("name", "case", "caller"), CELLS)
def test_each_caller_gets_what_the_contract_allows(
    world: World, name: str, case: Case, caller: str
) -> None:
    variables = case.prepare(world)
    token = world.token(caller)
    if case.stand_in is not None:
        token = case.stand_in(world, caller)
    if name.startswith("Subscription."):
        body = _subscribe(world, case, variables, token)
    else:
        body = world.gql(case.document, variables, token)
    if case.stand_in is not None:
        variables = variables | {"_token": token}
    field_name = name.split(".", 1)[1]
    expected = case.expect[caller]

    if expected in (OK, NULL):
        assert not body.get("errors"), body
        value = body["data"][field_name]
        if expected == NULL:
            assert value is None
        else:
            assert value is not None
            case.check(world, value, variables, caller)
    else:
        assert body.get("errors"), body
        codes = [error["extensions"]["code"] for error in body["errors"]]
        assert codes == [expected], body
        assert not (body.get("data") or {}).get(field_name)
    if case.after is not None:
        case.after(world, variables, expected == OK)

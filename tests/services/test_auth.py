"""Accounts, passwords, tokens, and anonymous pledges moving to an account."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import argon2
import jwt
import pytest
from sqlalchemy import text, update
from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.errors import BadUserInput, RateLimited, Unauthenticated
from careforall.domain.rules import Principal
from careforall.domain.states import Role
from careforall.models import AnonymousSession, Campaign, Pledge, User
from careforall.services import auth, bootstrap, emails, passwords, tokens
from careforall.services.auth import TokenKeys
from careforall.services.pledges import PledgeData, create_pledge, my_donations
from careforall.services.unit_of_work import UnitOfWork
from tests.helpers.waiting import wait_until
from tests.services.conftest import (
    PASSWORD,
    SECRET,
    MakeAnon,
    MakeUser,
    count_rows,
    unique_email,
    user_principal,
)


def _register(
    uow: UnitOfWork, keys: TokenKeys, email: str, anonymous_token: str | None = None
) -> auth.AuthResult:
    return auth.register(
        uow,
        keys=keys,
        email=email,
        password=PASSWORD,
        name="Dana",
        anonymous_token=anonymous_token,
    )


def _user_row(db: Database, user_id: str) -> User:
    with db.read() as session:
        user = session.get(User, user_id)
    assert user is not None
    return user


# --- register ------------------------------------------------------------------


def test_register_normalises_the_email_and_returns_a_user_token(
    db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    result = _register(uow, keys, "  Dana.Donor@Example.ORG ")
    assert result.user is not None
    assert result.anonymous is False
    assert result.user.email == "dana.donor@example.org"
    assert result.user.role == "DONOR"
    assert _user_row(db, result.user.id).email == "dana.donor@example.org"
    principal = auth.principal_from_token(keys, result.token)
    assert principal == Principal(kind="user", id=result.user.id, role=Role.DONOR)


def test_register_stores_an_argon2_hash_not_the_password(
    db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    result = _register(uow, keys, unique_email())
    assert result.user is not None
    with db.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT password_hash FROM users WHERE id = :i"), {"i": result.user.id}
        ).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert auth.verify_password(stored, PASSWORD)
    assert not auth.verify_password(stored, PASSWORD + "x")


def test_production_hasher_is_argon2id() -> None:
    """The fixture makes hashing cheap for speed; the real hasher is still argon2id."""
    assert passwords._DUMMY_HASH.startswith("$argon2id$")


def test_production_hasher_uses_owasps_parameters() -> None:
    """Made by the real hasher at import, before the cheap fixture replaces it:
    19 MiB, 2 passes, 1 lane (the library's defaults, 64 MiB and 4 lanes, took
    2 GB under 30 concurrent logins)."""
    used = argon2.extract_parameters(passwords._DUMMY_HASH)
    assert (used.type, used.memory_cost, used.time_cost, used.parallelism) == (
        argon2.Type.ID,
        19 * 1024,
        2,
        1,
    )
    default = argon2.PasswordHasher()
    assert (used.hash_len, used.salt_len) == (default.hash_len, default.salt_len)


def test_an_old_hash_is_replaced_on_login(
    db: Database, uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    """A hash made with other parameters (the old defaults) is made anew with
    today's when its password is next given; the password still works."""
    donor = make_user(email="dana@example.org")
    old = argon2.PasswordHasher(time_cost=1, memory_cost=2048, parallelism=2)
    old_hash = old.hash(PASSWORD)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE users SET password_hash = :h WHERE id = :i"),
            {"h": old_hash, "i": donor.id},
        )
    auth.login(uow, keys=keys, email="dana@example.org", password=PASSWORD)
    stored = _user_row(db, donor.id).password_hash
    assert stored != old_hash
    assert not passwords._HASHER.check_needs_rehash(stored)
    auth.login(uow, keys=keys, email="dana@example.org", password=PASSWORD)
    assert _user_row(db, donor.id).password_hash == stored  # once is enough


def test_a_wrong_password_leaves_an_old_hash_alone(
    db: Database, uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    donor = make_user(email="dana@example.org")
    old_hash = argon2.PasswordHasher(time_cost=1, memory_cost=2048).hash(PASSWORD)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE users SET password_hash = :h WHERE id = :i"),
            {"h": old_hash, "i": donor.id},
        )
    with pytest.raises(Unauthenticated):
        auth.login(uow, keys=keys, email="dana@example.org", password="wrong one!")
    assert _user_row(db, donor.id).password_hash == old_hash


def _hold(gate: passwords.HashGate, n: int) -> tuple[threading.Event, list[Any]]:
    """Fill `n` places of the gate with calls that wait for the event."""
    release = threading.Event()

    def held() -> None:
        with contextlib.suppress(RateLimited):  # a short wait gives up: still held
            gate.run(release.wait)

    threads = [threading.Thread(target=held) for _ in range(n)]
    for thread in threads:
        thread.start()
    wait_until(lambda: gate._admitted == n, what=f"{n} calls in the gate")
    return release, threads


def test_hashes_run_through_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashing and verifying take a place in the gate; a full gate is
    RATE_LIMITED with a retry hint, like the other rate limits."""
    gate = passwords.HashGate(slots=1, queue=0)
    monkeypatch.setattr(passwords, "GATE", gate)
    release, threads = _hold(gate, 1)
    with pytest.raises(RateLimited) as refused:
        passwords.hash_password(PASSWORD)
    assert refused.value.retry_after_seconds >= 1
    assert "wait 1 seconds" in refused.value.message
    with pytest.raises(RateLimited):
        passwords.verify_password(passwords._DUMMY_HASH, PASSWORD)
    release.set()
    for thread in threads:
        thread.join()
    assert passwords.verify_password(passwords.hash_password(PASSWORD), PASSWORD)


def test_the_gate_bounds_how_many_run_at_once() -> None:
    """Of 12 calls at once, at most `slots` run together, `queue` more wait
    their turn, and the rest are refused at once."""
    gate = passwords.HashGate(slots=2, queue=3, wait=5.0)
    running = peak = 0
    lock = threading.Lock()
    outcomes: list[str] = []
    start = threading.Barrier(12)

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    def call() -> None:
        start.wait()
        try:
            gate.run(work)
            outcomes.append("ran")
        except RateLimited:
            outcomes.append("refused")

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2
    assert sorted(outcomes) == ["ran"] * 5 + ["refused"] * 7


def test_the_gate_gives_up_after_its_wait() -> None:
    gate = passwords.HashGate(slots=1, queue=1, wait=0.05)
    release, threads = _hold(gate, 1)
    with pytest.raises(RateLimited):
        gate.run(lambda: None)
    release.set()
    for thread in threads:
        thread.join()
    wait_until(lambda: gate._admitted == 0, what="the gate to empty")
    gate.run(lambda: None)


@pytest.mark.parametrize(
    ("email", "password", "name"),
    [
        ("dana@example.org", "short12", "Dana"),  # 7 characters
        ("dana@example.org", "", "Dana"),
        ("dana@example.org", "p" * 1025, "Dana"),
        ("not-an-email", PASSWORD, "Dana"),
        ("dana@localhost", PASSWORD, "Dana"),
        ("@example.org", PASSWORD, "Dana"),
        ("dana@@example.org", PASSWORD, "Dana"),
        ("da na@example.org", PASSWORD, "Dana"),
        ("", PASSWORD, "Dana"),
        ("a" * 65 + "@example.org", PASSWORD, "Dana"),
        ("dana@example.org", PASSWORD, ""),
        ("dana@example.org", PASSWORD, "   "),
        ("dana@example.org", PASSWORD, "n" * 101),
    ],
)
def test_invalid_registrations_are_refused(
    email: str, password: str, name: str, db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    with pytest.raises(BadUserInput):
        auth.register(uow, keys=keys, email=email, password=password, name=name)
    assert count_rows(db, "users") == 0


def test_a_password_of_eight_characters_is_enough(
    uow: UnitOfWork, keys: TokenKeys
) -> None:
    result = auth.register(
        uow, keys=keys, email=unique_email(), password="k7#pQ2zv", name="D"
    )
    assert result.user is not None


@pytest.mark.parametrize(
    "password", ["password123", "12345678", "Qwerty123", " iloveyou1 ", "P@ssw0rd"]
)
def test_the_most_common_passwords_are_refused(
    password: str, db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    with pytest.raises(BadUserInput) as refused:
        auth.register(uow, keys=keys, email=unique_email(), password=password, name="D")
    assert "common" in refused.value.message
    assert count_rows(db, "users") == 0


def test_the_common_passwords_ship_in_the_package() -> None:
    """Read once from careforall/data (the wheel carries the package's files)."""
    common = passwords.common_passwords()
    assert len(common) > 3000
    assert "password1" in common and "correct horse battery" not in common
    assert passwords.common_passwords() is common


# --- login ---------------------------------------------------------------------


def test_login_with_the_right_password(
    uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    donor = make_user(email="dana@example.org")
    result = auth.login(uow, keys=keys, email=" DANA@example.org", password=PASSWORD)
    assert result.user is not None and result.user.id == donor.id
    assert auth.principal_from_token(keys, result.token) == donor


def test_an_account_that_kept_its_old_spelling_still_signs_in(
    db: Database, uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    """Two accounts from before the normalisation, `strasse@` and `straße@`:
    the second kept its old spelling (migration 0005), and both sign in."""
    first = make_user(email="strasse@example.org")
    second = make_user(email="someone-else@example.org")
    with db.write_session() as session:  # as migration 0005 leaves it
        session.execute(
            update(User)
            .where(col(User.id) == second.id)
            .values(email="straße@example.org", email_skeleton="strasse-kept")
        )
        session.commit()
    mine = auth.login(uow, keys=keys, email="strasse@example.org", password=PASSWORD)
    theirs = auth.login(
        UnitOfWork(db), keys=keys, email="Straße@example.org", password=PASSWORD
    )
    assert mine.user is not None and mine.user.id == first.id
    assert theirs.user is not None and theirs.user.id == second.id


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("dana@example.org", "wrong password"),
        ("dana@example.org", ""),
        ("nobody@example.org", PASSWORD),
        ("not an email", PASSWORD),
    ],
)
def test_login_failures_look_the_same(
    email: str, password: str, uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    make_user(email="dana@example.org")
    with pytest.raises(Unauthenticated) as refused:
        auth.login(uow, keys=keys, email=email, password=password)
    assert refused.value.code == "UNAUTHENTICATED"
    assert refused.value.message == "The email or password is not right."


# --- tokens --------------------------------------------------------------------


def test_anonymous_token_round_trip(
    keys: TokenKeys, make_anon: MakeAnon, db: Database
) -> None:
    principal, token = make_anon()
    assert principal.kind == "anon"
    assert principal.role == Role.DONOR
    with db.read() as session:
        assert session.get(AnonymousSession, principal.id) is not None
    assert auth.principal_from_token(keys, token) == principal


def test_admin_token_carries_the_role(keys: TokenKeys, admin: Principal) -> None:
    token = auth.issue_token(keys, admin)
    assert auth.principal_from_token(keys, token).is_admin


def test_tokens_expire(keys: TokenKeys) -> None:
    short = TokenKeys(
        secret=SECRET,
        user_ttl=timedelta(seconds=-1),
        anonymous_ttl=timedelta(seconds=-1),
    )
    for principal in (
        Principal(kind="user", id="usr_x"),
        Principal(kind="anon", id="anon_x"),
    ):
        token = auth.issue_token(short, principal)
        with pytest.raises(Unauthenticated) as refused:
            auth.principal_from_token(keys, token)
        assert "expired" in refused.value.message


def test_a_token_that_passed_once_is_still_refused_once_it_expires(
    keys: TokenKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    principal = Principal(kind="anon", id="anon_remembered")
    token = auth.issue_token(keys, principal)
    assert auth.principal_from_token(keys, token) == principal  # now remembered
    expires_at = jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
    later = SimpleNamespace(time=lambda: expires_at + 1.0)
    monkeypatch.setattr(tokens, "time", later)
    with pytest.raises(Unauthenticated) as refused:
        auth.principal_from_token(keys, token)
    assert "expired" in refused.value.message


def test_a_remembered_token_does_not_pass_under_another_secret(
    keys: TokenKeys,
) -> None:
    token = auth.issue_token(keys, Principal(kind="user", id="usr_x"))
    auth.principal_from_token(keys, token)  # now remembered under SECRET
    other = TokenKeys(
        secret="another-" + "s" * 60,
        user_ttl=timedelta(hours=1),
        anonymous_ttl=timedelta(hours=1),
    )
    with pytest.raises(Unauthenticated):
        auth.principal_from_token(other, token)


def test_token_lifetimes_depend_on_the_kind(keys: TokenKeys) -> None:
    def lifetime(principal: Principal) -> int:
        claims = jwt.decode(
            auth.issue_token(keys, principal), SECRET, algorithms=["HS256"]
        )
        return int(claims["exp"]) - int(claims["iat"])

    assert lifetime(Principal(kind="user", id="u")) == 3600
    assert lifetime(Principal(kind="anon", id="a")) == 86_400


def test_a_token_signed_with_another_secret_is_refused(keys: TokenKeys) -> None:
    other = TokenKeys(
        secret="another-" + "s" * 60,
        user_ttl=timedelta(hours=1),
        anonymous_ttl=timedelta(hours=1),
    )
    token = auth.issue_token(other, Principal(kind="user", id="usr_x"))
    with pytest.raises(Unauthenticated):
        auth.principal_from_token(keys, token)


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": "usr_x",
        "kind": "user",
        "role": "ADMIN",
        "iat": now,
        "exp": now + 600,
    } | changes


def test_alg_none_is_refused(keys: TokenKeys) -> None:
    token = jwt.encode(_claims(), key=None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated):
        auth.principal_from_token(keys, token)


def test_hs512_with_the_right_secret_is_refused(keys: TokenKeys) -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        auth.principal_from_token(keys, token)


@pytest.mark.parametrize(
    "claims",
    [
        _claims(exp=None),
        _claims(sub=None),
        _claims(sub=42),
        _claims(kind="robot"),
        _claims(kind=None),
        _claims(role="GOD"),
        _claims(role=None),
    ],
    ids=["no exp", "no sub", "int sub", "bad kind", "no kind", "bad role", "no role"],
)
def test_tokens_with_bad_claims_are_refused(
    claims: dict[str, object], keys: TokenKeys
) -> None:
    claims = {k: v for k, v in claims.items() if v is not None}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        auth.principal_from_token(keys, token)


def test_an_anonymous_token_cannot_claim_admin(keys: TokenKeys) -> None:
    token = jwt.encode(
        _claims(kind="anon", sub="anon_x", role="ADMIN"), SECRET, algorithm="HS256"
    )
    principal = auth.principal_from_token(keys, token)
    assert principal.kind == "anon"
    assert not principal.is_admin


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "Bearer x"])
def test_garbage_tokens_are_refused(token: str, keys: TokenKeys) -> None:
    with pytest.raises(Unauthenticated):
        auth.principal_from_token(keys, token)


# --- anonymous pledges move to the account ------------------------------------


def _guest_with_pledges(
    uow: UnitOfWork, make_anon: MakeAnon, campaign: Campaign, n: int
) -> tuple[Principal, str, list[str]]:
    guest, token = make_anon()
    ids = [
        create_pledge(
            uow,
            principal=guest,
            data=PledgeData(
                campaign_id=campaign.id, amount_cents=100 + i, idempotency_key=f"g-{i}"
            ),
        ).id
        for i in range(n)
    ]
    return guest, token, ids


def _donations(db: Database, principal: Principal) -> list[str]:
    with db.read() as session:
        return [
            p.id
            for p in my_donations(
                session, principal=principal, first=100, after=None
            ).items
        ]


def _donor_users(db: Database, pledge_ids: list[str]) -> set[str | None]:
    with db.read() as session:
        return {
            p.donor_user_id
            for p in (session.get(Pledge, i) for i in pledge_ids)
            if p is not None
        }


def _claimed_events(db: Database) -> int:
    return count_rows(db, "outbox_events WHERE name = 'PledgesClaimed'")


def test_register_with_an_anonymous_token_moves_its_pledges(
    db: Database,
    uow: UnitOfWork,
    keys: TokenKeys,
    campaign: Campaign,
    make_anon: MakeAnon,
) -> None:
    guest, token, ids = _guest_with_pledges(uow, make_anon, campaign, 3)
    assert _donations(db, guest) == list(reversed(ids))

    result = _register(uow, keys, unique_email(), anonymous_token=token)
    user = user_principal(result)

    assert _donor_users(db, ids) == {user.id}
    assert _donations(db, user) == list(reversed(ids))
    assert _donations(db, guest) == []
    assert _claimed_events(db) == 1
    with db.read() as session:
        anon = session.get(AnonymousSession, guest.id)
    assert anon is not None and anon.claimed_by_user_id == user.id


def test_login_with_an_anonymous_token_moves_its_pledges(
    db: Database,
    uow: UnitOfWork,
    keys: TokenKeys,
    campaign: Campaign,
    make_user: MakeUser,
    make_anon: MakeAnon,
) -> None:
    donor = make_user(email="dana@example.org")
    own = create_pledge(
        uow,
        principal=donor,
        data=PledgeData(
            campaign_id=campaign.id, amount_cents=5000, idempotency_key="own"
        ),
    )
    guest, token, ids = _guest_with_pledges(uow, make_anon, campaign, 2)

    result = auth.login(
        uow,
        keys=keys,
        email="dana@example.org",
        password=PASSWORD,
        anonymous_token=token,
    )

    assert user_principal(result) == donor
    assert _donor_users(db, ids) == {donor.id}
    assert _donations(db, donor) == [*reversed(ids), own.id]
    assert _donations(db, guest) == []


def test_pledges_made_after_the_claim_stay_with_the_session(
    db: Database,
    uow: UnitOfWork,
    keys: TokenKeys,
    campaign: Campaign,
    make_anon: MakeAnon,
) -> None:
    guest, token, ids = _guest_with_pledges(uow, make_anon, campaign, 1)
    user = user_principal(_register(uow, keys, unique_email(), anonymous_token=token))
    later = create_pledge(
        uow,
        principal=guest,
        data=PledgeData(
            campaign_id=campaign.id, amount_cents=77, idempotency_key="later"
        ),
    )
    assert _donations(db, user) == ids
    assert _donations(db, guest) == [later.id]


def test_a_session_claimed_by_one_account_is_not_moved_to_another(
    db: Database,
    uow: UnitOfWork,
    keys: TokenKeys,
    campaign: Campaign,
    make_anon: MakeAnon,
) -> None:
    guest, token, ids = _guest_with_pledges(uow, make_anon, campaign, 2)
    first = user_principal(_register(uow, keys, unique_email(), anonymous_token=token))
    second = user_principal(_register(uow, keys, unique_email(), anonymous_token=token))
    assert _donor_users(db, ids) == {first.id}
    assert _donations(db, second) == []


def test_login_twice_with_the_same_token_changes_nothing_more(
    db: Database,
    uow: UnitOfWork,
    keys: TokenKeys,
    campaign: Campaign,
    make_user: MakeUser,
    make_anon: MakeAnon,
) -> None:
    donor = make_user(email="dana@example.org")
    _, token, ids = _guest_with_pledges(uow, make_anon, campaign, 2)
    for _ in range(2):
        auth.login(
            uow,
            keys=keys,
            email="dana@example.org",
            password=PASSWORD,
            anonymous_token=token,
        )
    assert _donor_users(db, ids) == {donor.id}
    assert _donations(db, donor) == list(reversed(ids))


def test_a_wrong_password_with_an_anonymous_token_moves_nothing(
    db: Database,
    uow: UnitOfWork,
    keys: TokenKeys,
    campaign: Campaign,
    make_user: MakeUser,
    make_anon: MakeAnon,
) -> None:
    make_user(email="dana@example.org")
    guest, token, ids = _guest_with_pledges(uow, make_anon, campaign, 1)
    with pytest.raises(Unauthenticated):
        auth.login(
            uow,
            keys=keys,
            email="dana@example.org",
            password="wrong password",
            anonymous_token=token,
        )
    assert _donor_users(db, ids) == {None}
    assert _donations(db, guest) == ids


@pytest.mark.parametrize("bad", ["garbage", "user", "other-secret", "expired"])
def test_an_invalid_anonymous_token_is_refused_and_no_user_is_made(
    bad: str, db: Database, uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    if bad == "garbage":
        token = "not.a.token"
    elif bad == "user":  # a valid token, but of an account, not an anonymous session
        token = auth.issue_token(keys, make_user())
    elif bad == "other-secret":
        other = TokenKeys(
            secret="other-" + "s" * 60,
            user_ttl=keys.user_ttl,
            anonymous_ttl=keys.anonymous_ttl,
        )
        token = auth.issue_token(other, Principal(kind="anon", id="anon_x"))
    else:
        expired = TokenKeys(
            secret=SECRET, user_ttl=keys.user_ttl, anonymous_ttl=timedelta(seconds=-5)
        )
        token = auth.issue_token(expired, Principal(kind="anon", id="anon_x"))
    users_before = count_rows(db, "users")

    with pytest.raises(BadUserInput) as refused:
        _register(uow, keys, "new@example.org", anonymous_token=token)

    assert "anonymousToken" in refused.value.message
    assert count_rows(db, "users") == users_before
    with db.read() as session:
        assert (
            session.exec(select(User).where(User.email == "new@example.org")).first()
            is None
        )


def test_login_with_an_invalid_anonymous_token_is_refused(
    uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    make_user(email="dana@example.org")
    with pytest.raises(BadUserInput):
        auth.login(
            uow,
            keys=keys,
            email="dana@example.org",
            password=PASSWORD,
            anonymous_token="garbage",
        )


# --- ensure_admin --------------------------------------------------------------


def test_ensure_admin_is_idempotent(
    db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    first = bootstrap.ensure_admin(uow, email="Root@Example.org", password=PASSWORD)
    second = bootstrap.ensure_admin(uow, email="root@example.org", password=PASSWORD)
    assert first.id == second.id
    assert count_rows(db, "users") == 1
    assert _user_row(db, first.id).role == "ADMIN"
    result = auth.login(uow, keys=keys, email="root@example.org", password=PASSWORD)
    assert auth.principal_from_token(keys, result.token).is_admin
    # Nothing changed the second time: the first token still works.
    token = auth.login(uow, keys=keys, email="root@example.org", password=PASSWORD)
    bootstrap.ensure_admin(uow, email="root@example.org", password=PASSWORD)
    assert auth.authenticate(db, keys, token.token).is_admin


@pytest.mark.parametrize("spelled", ["ops@example.org", "оps@example.org"])
def test_ensure_admin_never_promotes_an_existing_account(
    spelled: str, db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    """Someone registered the admin's address (or a look-alike) first: the
    account stays a donor, its password and its tokens stay as they were."""
    squatter = _register(uow, keys, spelled)
    assert squatter.user is not None
    with pytest.raises(bootstrap.NotPromoted) as refused:
        bootstrap.ensure_admin(
            uow, email="ops@example.org", password="the operator's password"
        )
    assert "ops@example.org" in str(refused.value)
    row = _user_row(db, squatter.user.id)
    assert row.role == "DONOR"
    assert not auth.authenticate(db, keys, squatter.token).is_admin
    assert count_rows(db, "users") == 1
    with pytest.raises(Unauthenticated):
        auth.login(
            uow, keys=keys, email="ops@example.org", password="the operator's password"
        )


def test_promote_makes_an_existing_account_admin_and_ends_its_tokens(
    db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    squatter = _register(uow, keys, "ops@example.org")
    assert squatter.user is not None
    promoted = bootstrap.ensure_admin(
        uow, email="ops@example.org", password="the operator's password", promote=True
    )
    assert promoted.id == squatter.user.id
    assert _user_row(db, promoted.id).role == "ADMIN"
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, keys, squatter.token)
    with pytest.raises(Unauthenticated):
        auth.login(uow, keys=keys, email="ops@example.org", password=PASSWORD)
    result = auth.login(
        uow, keys=keys, email="ops@example.org", password="the operator's password"
    )
    assert auth.authenticate(db, keys, result.token).is_admin


def test_promote_never_takes_a_look_alike_account(
    db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    squatter = _register(uow, keys, "оps@example.org")  # Cyrillic о
    assert squatter.user is not None
    with pytest.raises(bootstrap.NotPromoted):
        bootstrap.ensure_admin(
            uow, email="ops@example.org", password=PASSWORD, promote=True
        )
    assert _user_row(db, squatter.user.id).role == "DONOR"


def test_ensure_admin_resets_a_changed_password_and_ends_earlier_tokens(
    db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    bootstrap.ensure_admin(uow, email="root@example.org", password=PASSWORD)
    before = auth.login(uow, keys=keys, email="root@example.org", password=PASSWORD)
    bootstrap.ensure_admin(
        uow, email="root@example.org", password="a brand new password"
    )
    with pytest.raises(Unauthenticated):
        auth.login(uow, keys=keys, email="root@example.org", password=PASSWORD)
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, keys, before.token)
    result = auth.login(
        uow, keys=keys, email="root@example.org", password="a brand new password"
    )
    assert auth.principal_from_token(keys, result.token).is_admin


# --- ending tokens -----------------------------------------------------------------


def test_logout_ends_the_token_and_every_other_of_the_user(
    db: Database, uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    make_user(email="dana@example.org")
    phone = auth.login(uow, keys=keys, email="dana@example.org", password=PASSWORD)
    laptop = auth.login(uow, keys=keys, email="dana@example.org", password=PASSWORD)
    principal = auth.authenticate(db, keys, phone.token)
    assert auth.logout(uow, principal=principal) is True
    for ended in (phone, laptop):
        with pytest.raises(Unauthenticated) as refused:
            auth.authenticate(db, keys, ended.token)
        assert "ended" in refused.value.message
    fresh = auth.login(uow, keys=keys, email="dana@example.org", password=PASSWORD)
    assert auth.authenticate(db, keys, fresh.token) == principal


def test_logout_ends_an_anonymous_token(
    db: Database, uow: UnitOfWork, keys: TokenKeys, make_anon: MakeAnon
) -> None:
    guest, token = make_anon()
    assert auth.authenticate(db, keys, token) == guest
    auth.logout(uow, principal=guest)
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, keys, token)
    # An ended session's token cannot bring its pledges to an account either.
    with pytest.raises(BadUserInput):
        _register(uow, keys, unique_email(), anonymous_token=token)


def test_logout_needs_a_token(uow: UnitOfWork) -> None:
    with pytest.raises(Unauthenticated):
        auth.logout(uow, principal=None)


def test_change_password_ends_earlier_tokens_and_gives_a_fresh_one(
    db: Database, uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    donor = make_user(email="dana@example.org")
    other = auth.login(uow, keys=keys, email="dana@example.org", password=PASSWORD)
    result = auth.change_password(
        uow,
        keys=keys,
        principal=donor,
        current_password=PASSWORD,
        new_password="a much better passphrase",
    )
    assert auth.authenticate(db, keys, result.token) == donor
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, keys, other.token)
    with pytest.raises(Unauthenticated):
        auth.login(uow, keys=keys, email="dana@example.org", password=PASSWORD)
    auth.login(
        uow, keys=keys, email="dana@example.org", password="a much better passphrase"
    )


@pytest.mark.parametrize(
    ("current", "new"),
    [("not the password", "a much better passphrase"), (PASSWORD, "password123")],
)
def test_change_password_refusals_change_nothing(
    current: str,
    new: str,
    db: Database,
    uow: UnitOfWork,
    keys: TokenKeys,
    make_user: MakeUser,
) -> None:
    donor = make_user(email="dana@example.org")
    token = auth.login(uow, keys=keys, email="dana@example.org", password=PASSWORD)
    with pytest.raises(BadUserInput):
        auth.change_password(
            uow, keys=keys, principal=donor, current_password=current, new_password=new
        )
    assert auth.authenticate(db, keys, token.token) == donor
    auth.login(uow, keys=keys, email="dana@example.org", password=PASSWORD)


def test_change_password_is_for_accounts(
    uow: UnitOfWork, keys: TokenKeys, make_anon: MakeAnon
) -> None:
    guest, _ = make_anon()
    with pytest.raises(Unauthenticated):
        auth.change_password(
            uow, keys=keys, principal=guest, current_password="x", new_password="y"
        )


def test_a_role_change_and_a_deleted_account_act_at_once(
    db: Database, uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    donor = make_user(email="dana@example.org")
    token = auth.issue_token(keys, donor)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE users SET role = 'ADMIN' WHERE id = :i"), {"i": donor.id}
        )
    assert auth.authenticate(db, keys, token).is_admin
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :i"), {"i": donor.id})
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, keys, token)


def test_a_token_from_before_versions_counts_as_version_zero(
    db: Database, uow: UnitOfWork, keys: TokenKeys, make_user: MakeUser
) -> None:
    donor = make_user(email="dana@example.org")
    now = int(time.time())
    claims = {"sub": donor.id, "kind": "user", "role": "DONOR", "iat": now}
    token = jwt.encode(claims | {"exp": now + 600}, SECRET, algorithm="HS256")
    assert auth.authenticate(db, keys, token) == donor
    auth.logout(uow, principal=donor)
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, keys, token)


# --- anonymous tokens are renewed when used -------------------------------------


def test_an_anonymous_token_older_than_a_day_is_renewed(
    keys: TokenKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    guest = Principal(kind="anon", id="anon_r")
    token = auth.issue_token(keys, guest, version=3)
    claims = tokens.read_token(keys, token)
    assert tokens.renewed_token(keys, claims) is None  # fresh: nothing to renew
    user = tokens.read_token(keys, auth.issue_token(keys, Principal("user", "u")))
    later = claims.issued_at + 86_400 + 1
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: later))
    renewed = tokens.renewed_token(keys, claims)
    assert renewed is not None
    fresh = jwt.decode(renewed, SECRET, algorithms=["HS256"])
    assert fresh["sub"] == "anon_r" and fresh["ver"] == 3
    assert tokens.renewed_token(keys, user) is None


# --- email addresses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("  Dana.Donor@Example.ORG ", "dana.donor@example.org"),
        ("ＤＡＮＡ@example.org", "dana@example.org"),  # fullwidth letters
        ("STRAßE@example.org", "strasse@example.org"),
    ],
)
def test_emails_are_normalised(given: str, stored: str) -> None:
    assert auth.normalize_email(given) == stored


@pytest.mark.parametrize(
    "given",
    [
        "a:victim@example.com",  # a header reads a group "a:" before the address
        "a,b@example.com",  # two addresses
        "<victim@example.com>@example.org",
        "x(y)@example.org",
        'x"y@example.org',
        "x\x07y@example.org",
    ],
)
def test_an_address_a_mail_header_would_read_otherwise_is_refused(
    given: str,
) -> None:
    with pytest.raises(BadUserInput):
        auth.normalize_email(given)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("paypal@example.org", "pаypal@example.org"),  # Cyrillic а
        ("ops@example.org", "οps@example.org"),  # Greek ο
        ("ops@example.org", "0ps@example.org"),
        ("bill@example.org", "bi1l@example.org"),
        ("rene@example.org", "rené@example.org"),
        ("cox@example.org", "сох@example.org"),  # Cyrillic с, о, х
        ("pepe@example.org", "рере@example.org"),  # Cyrillic р, е
    ],
)
def test_look_alike_addresses_are_refused(
    first: str, second: str, db: Database, uow: UnitOfWork, keys: TokenKeys
) -> None:
    assert emails.email_skeleton(first) == emails.email_skeleton(second)
    _register(uow, keys, first)
    with pytest.raises(BadUserInput) as refused:
        _register(uow, keys, second)
    assert "looks like" in refused.value.message
    assert count_rows(db, "users") == 1


def test_addresses_that_differ_are_not_look_alikes() -> None:
    assert emails.email_skeleton("mail@example.org") != emails.email_skeleton(
        "mall@example.org"
    )
    assert emails.email_skeleton("dana@example.org") != emails.email_skeleton(
        "dama@example.org"
    )

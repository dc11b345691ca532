"""updateProfile: only the fields given change; a new address is normalised,
unique by look, unverified, mailed a verification link, and the old address
gets a notice; links mailed before stop working."""

from __future__ import annotations

import uuid

import pytest

from careforall.db import Database
from careforall.domain.errors import BadUserInput, Unauthenticated
from careforall.models import User
from careforall.services import profile, recovery, verification
from careforall.services.auth import TokenKeys
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.account_mails import ask_reset, link_token
from tests.helpers.mails import all_mails, email_of
from tests.helpers.outbox import deliver
from tests.services.conftest import MakeUser


def user_row(db: Database, user_id: str) -> User:
    with db.read() as session:
        user = session.get(User, user_id)
    assert user is not None
    return user


def test_only_the_fields_given_change(db: Database, make_user: MakeUser) -> None:
    donor = make_user(name="Dana Donor")
    email = email_of(db, donor)
    user = profile.update_profile(UnitOfWork(db), principal=donor, name=" Dana D. ")
    assert (user.name, user.email, user.email_verified) == ("Dana D.", email, True)
    user = profile.update_profile(UnitOfWork(db), principal=donor)
    assert (user.name, user.email) == ("Dana D.", email)
    # The same address, spelled otherwise: nothing to verify again.
    user = profile.update_profile(UnitOfWork(db), principal=donor, email=email.upper())
    assert (user.email, user.email_verified) == (email, True)


def test_a_new_address_is_verified_anew_and_the_old_one_told(
    db: Database, settings: Settings, keys: TokenKeys, make_user: MakeUser
) -> None:
    donor = make_user()
    old = email_of(db, donor)
    reset_token = ask_reset(db, settings, old)
    new = f"New-{uuid.uuid4().hex[:6]}@Example.org"
    user = profile.update_profile(UnitOfWork(db), principal=donor, email=new)
    assert user.email == new.lower() and not user.email_verified
    deliver(db, settings)
    [notice] = [m for m in all_mails(db) if m.kind == "email_changed"]
    assert notice.to_address == old
    assert new.lower() in notice.text and "changed" in notice.subject
    # The reset link mailed to the old address no longer works.
    with pytest.raises(BadUserInput):
        recovery.reset_password(
            UnitOfWork(db), keys=keys, token=reset_token, new_password="fresh words"
        )
    verification.verify_email(
        UnitOfWork(db), token=link_token(db, "email_verification", new.lower())
    )
    assert user_row(db, donor.id).email_verified


def test_taken_and_look_alike_addresses_are_refused(
    db: Database, make_user: MakeUser
) -> None:
    taken = email_of(db, make_user())
    donor = make_user(name="Kim")
    before = user_row(db, donor.id)
    local, domain = taken.split("@")
    for address in (taken.upper(), f"{local.replace('o', 'о')}@{domain}", "nope"):
        with pytest.raises(BadUserInput):
            profile.update_profile(
                UnitOfWork(db), principal=donor, name="Changed", email=address
            )
    with pytest.raises(BadUserInput):
        profile.update_profile(UnitOfWork(db), principal=donor, name="  ")
    after = user_row(db, donor.id)
    assert (after.name, after.email) == (before.name, before.email)


def test_a_profile_is_for_accounts(db: Database) -> None:
    with pytest.raises(Unauthenticated):
        profile.update_profile(UnitOfWork(db), principal=None, name="X")

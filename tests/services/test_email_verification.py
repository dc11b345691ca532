"""Verified addresses and guests' donorEmail: the verification link (once, for
24 hours, for the address the account still has), the guest's receipt sent to
the address given, and a guest's donations joining the account that verifies
that address."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlmodel import select

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import BadUserInput, IdempotencyKeyReused
from careforall.domain.rules import Principal
from careforall.models import Campaign, Pledge, User
from careforall.services import account_tokens, recovery, verification
from careforall.services.auth import TokenKeys
from careforall.services.pledges import PledgeData, create_pledge, my_donations
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.account_mails import ask_reset, link_token
from tests.helpers.mails import all_mails, email_of
from tests.helpers.outbox import deliver
from tests.helpers.pledges import provider_says
from tests.services.conftest import MakeAnon, MakeUser


def verification_token(db: Database, address: str) -> str:
    return link_token(db, "email_verification", address)


def guest_gives(
    db: Database,
    guest: Principal,
    campaign: Campaign,
    donor_email: str | None,
    key: str | None = None,
) -> Pledge:
    data = PledgeData(
        campaign_id=campaign.id,
        amount_cents=1500,
        idempotency_key=key or uuid.uuid4().hex,
        donor_email=donor_email,
    )
    return create_pledge(UnitOfWork(db), principal=guest, data=data)


def mine(db: Database, who: Principal) -> set[str]:
    with db.read() as session:
        page = my_donations(session, principal=who, first=50, after=None)
    return {pledge.id for pledge in page.items}


def verified(db: Database, who: Principal) -> bool:
    with db.read() as session:
        user = session.get(User, who.id)
    assert user is not None
    return user.email_verified


def test_registering_mails_a_link_that_verifies_the_address_once(
    db: Database, settings: Settings, make_user: MakeUser
) -> None:
    donor = make_user(verified=False)
    deliver(db, settings)
    assert not verified(db, donor)
    token = verification_token(db, email_of(db, donor))
    user = verification.verify_email(UnitOfWork(db), token=token)
    assert user.id == donor.id and user.email_verified
    assert verified(db, donor)
    with pytest.raises(BadUserInput, match="not valid"):
        verification.verify_email(UnitOfWork(db), token=token)
    # Verified: asking again sends nothing.
    assert verification.request_email_verification(UnitOfWork(db), principal=donor)
    deliver(db, settings)
    assert len([m for m in all_mails(db) if m.kind == "email_verification"]) == 1


def test_a_verification_link_expires_after_a_day(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    donor = make_user(verified=False)
    deliver(db, settings)
    token = verification_token(db, email_of(db, donor))
    later = utcnow() + timedelta(hours=24, seconds=1)
    monkeypatch.setattr(account_tokens, "utcnow", lambda: later)
    with pytest.raises(BadUserInput, match="not valid"):
        verification.verify_email(UnitOfWork(db), token=token)
    assert not verified(db, donor)


def test_a_guest_receipt_goes_to_the_donor_email_given(
    db: Database,
    settings: Settings,
    make_anon: MakeAnon,
    campaign: Campaign,
) -> None:
    guest, _token = make_anon()
    with_address = guest_gives(db, guest, campaign, "  Guest.Donor@Example.ORG ")
    without = guest_gives(db, guest, campaign, None)
    assert with_address.donor_email == "guest.donor@example.org"
    provider_says(db, with_address.id, "captured")
    provider_says(db, without.id, "captured")
    deliver(db, settings)
    [receipt] = [m for m in all_mails(db) if m.kind == "receipt"]
    assert receipt.to_address == "guest.donor@example.org"
    assert with_address.id in receipt.text


def test_a_donor_email_is_one_mailbox_and_a_replay_answers_the_same(
    db: Database, make_anon: MakeAnon, campaign: Campaign
) -> None:
    guest, _token = make_anon()
    for bad in ("not an address", "a@b.org, c@d.org", "x <a@b.org>"):
        with pytest.raises(BadUserInput):
            guest_gives(db, guest, campaign, bad)
    with db.read() as session:
        assert session.exec(select(Pledge)).all() == []
    first = guest_gives(db, guest, campaign, "Kim@example.org", key="k1")
    again = guest_gives(db, guest, campaign, "kim@EXAMPLE.org", key="k1")
    assert again.id == first.id
    with pytest.raises(IdempotencyKeyReused):
        guest_gives(db, guest, campaign, "other@example.org", key="k1")


def test_verifying_an_address_brings_the_guests_pledges_given_with_it(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    make_anon: MakeAnon,
    campaign: Campaign,
) -> None:
    guest, _token = make_anon()
    address = f"kim-{uuid.uuid4().hex[:6]}@example.org"
    given = guest_gives(db, guest, campaign, address.upper())
    other = guest_gives(db, guest, campaign, "someone-else@example.org")
    anonymous = guest_gives(db, guest, campaign, None)
    provider_says(db, given.id, "captured")
    donor = make_user(email=address, verified=False)
    deliver(db, settings)
    assert given.id not in mine(db, donor)  # not before the address is proven
    verification.verify_email(UnitOfWork(db), token=verification_token(db, address))
    assert mine(db, donor) == {given.id}
    assert mine(db, guest) == {other.id, anonymous.id}


def test_a_password_reset_verifies_the_address_and_brings_guest_pledges(
    db: Database,
    settings: Settings,
    keys: TokenKeys,
    make_user: MakeUser,
    make_anon: MakeAnon,
    campaign: Campaign,
) -> None:
    guest, _token = make_anon()
    address = f"lee-{uuid.uuid4().hex[:6]}@example.org"
    given = guest_gives(db, guest, campaign, address)
    donor = make_user(email=address, verified=False)
    token = ask_reset(db, settings, address)
    recovery.reset_password(
        UnitOfWork(db), keys=keys, token=token, new_password="a brand new phrase"
    )
    assert verified(db, donor)
    assert mine(db, donor) == {given.id}


def test_an_admin_made_by_the_operator_is_verified(
    db: Database, admin: Principal
) -> None:
    assert verified(db, admin)

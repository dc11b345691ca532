"""deleteAccount: the right password, then the person is erased (name, address,
password, tokens, notifications, links and mails) while the pledges stay,
anonymised, with the totals exactly as before; the campaigns they organised
stay too; the last admin stays; every step audited."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.errors import BadUserInput, Forbidden, Unauthenticated
from careforall.domain.rules import Principal
from careforall.models import (
    AccountToken,
    AuditLog,
    Campaign,
    Mail,
    Notification,
    Pledge,
    User,
)
from careforall.services import auth, erasure, totals
from careforall.services.auth import TokenKeys
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.mails import email_of
from tests.helpers.outbox import deliver
from tests.helpers.pledges import give, provider_says
from tests.services.conftest import PASSWORD, MakeUser
from tests.services.conftest import totals as stored_totals


def test_a_wrong_password_changes_nothing(db: Database, make_user: MakeUser) -> None:
    donor = make_user()
    with pytest.raises(BadUserInput, match="password is not right"):
        erasure.delete_account(UnitOfWork(db), principal=donor, password="wrong one")
    with pytest.raises(Unauthenticated):
        erasure.delete_account(UnitOfWork(db), principal=None, password=PASSWORD)
    with db.read() as session:
        user = session.get(User, donor.id)
    assert user is not None and user.erased_at is None


def test_erasure_keeps_the_pledges_and_the_totals_exactly(
    db: Database,
    settings: Settings,
    keys: TokenKeys,
    make_user: MakeUser,
    campaign: Campaign,
    organiser: Principal,
) -> None:
    donor = make_user(name="Erin Erased", verified=False)
    email = email_of(db, donor)
    token = auth.login(UnitOfWork(db), keys=keys, email=email, password=PASSWORD)
    captured = give(db, donor, campaign, 2500)
    refunded = give(db, donor, campaign, 900)
    other = give(db, organiser, campaign, 700)
    provider_says(db, captured, "captured")
    provider_says(db, refunded, "captured")
    provider_says(db, refunded, "refunded")
    provider_says(db, other, "captured")
    deliver(db, settings)
    before = stored_totals(db, campaign.id)
    assert before == (3200, 2)

    with db.read() as session:
        assert session.exec(select(Mail).where(Mail.to_address == email)).all()
    assert erasure.delete_account(UnitOfWork(db), principal=donor, password=PASSWORD)
    deliver(db, settings)

    assert stored_totals(db, campaign.id) == before
    assert totals.reconcile(UnitOfWork(db)) == []  # the pledges still add up
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, keys, token.token)
    with pytest.raises(Unauthenticated):
        auth.login(UnitOfWork(db), keys=keys, email=email, password=PASSWORD)
    with db.read() as session:
        user = session.get(User, donor.id)
        assert user is not None
        assert (user.name, user.password_hash) == ("Deleted account", "")
        assert email not in user.email and user.erased_at is not None
        pledges = session.exec(
            select(Pledge).where(col(Pledge.id).in_([captured, refunded]))
        ).all()
        assert {(p.status, p.donor_name) for p in pledges} == {
            ("CAPTURED", None),
            ("REFUNDED", None),
        }
        assert (
            session.exec(
                select(Notification).where(Notification.recipient_user_id == donor.id)
            ).all()
            == []
        )
        assert (
            session.exec(
                select(AccountToken).where(AccountToken.user_id == donor.id)
            ).all()
            == []
        )
        assert session.exec(select(Mail).where(Mail.to_address == email)).all() == []
        [audit] = session.exec(
            select(AuditLog).where(AuditLog.action == "delete_account")
        ).all()
        assert (audit.actor_user_id, audit.target_id) == (donor.id, donor.id)
    # The address is free again.
    auth.register(
        UnitOfWork(db), keys=keys, email=email, password=PASSWORD, name="New Erin"
    )


def test_an_organisers_campaigns_stay_under_a_deleted_account(
    db: Database, campaign: Campaign, organiser: Principal
) -> None:
    erasure.delete_account(UnitOfWork(db), principal=organiser, password=PASSWORD)
    with db.read() as session:
        row = session.get(Campaign, campaign.id)
        assert row is not None and row.owner_id == organiser.id
        owner = session.get(User, organiser.id)
    assert owner is not None and owner.name == "Deleted account"


def test_the_last_admin_cannot_be_deleted(
    db: Database, admin: Principal, make_user: MakeUser
) -> None:
    with pytest.raises(Forbidden, match="last admin"):
        erasure.delete_account(UnitOfWork(db), principal=admin, password=PASSWORD)
    other = make_user()
    with UnitOfWork(db) as uow:
        user = uow.session.get(User, other.id)
        assert user is not None
        user.role = "ADMIN"
        uow.session.add(user)
        uow.commit()
    assert erasure.delete_account(UnitOfWork(db), principal=admin, password=PASSWORD)
    second = Principal(kind="user", id=other.id, role=admin.role)
    with pytest.raises(Forbidden):
        erasure.delete_account(UnitOfWork(db), principal=second, password=PASSWORD)

"""Service-layer fixtures: token keys with a fixed secret, makers for users,
anonymous sessions and campaigns that go through the services themselves, and
the Stripe adapter on the local stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

import pytest
from sqlalchemy import event, text, update
from sqlmodel import col

from careforall.db import Database
from careforall.domain.rules import Principal
from careforall.domain.states import Role
from careforall.models import Campaign, User
from careforall.payment_config import StripeConfig
from careforall.payments.stripe import StripeProvider
from careforall.services import auth, bootstrap, reviews
from careforall.services.auth import TokenKeys
from careforall.services.campaigns import CampaignData, create_campaign
from careforall.services.unit_of_work import UnitOfWork
from tests.helpers.stripe_standin import StripeStandIn

# 64 bytes: long enough that PyJWT does not warn, even for HS512.
SECRET = "test-secret-" + "k" * 52
PASSWORD = "correct horse battery"


@pytest.fixture
def keys() -> TokenKeys:
    return TokenKeys(
        secret=SECRET, user_ttl=timedelta(hours=1), anonymous_ttl=timedelta(days=1)
    )


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.org"


def count_rows(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@contextmanager
def statements_sent(db: Database) -> Iterator[list[str]]:
    """The SQL that SQLAlchemy sends to the driver inside the block."""
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def totals(db: Database, campaign_id: str) -> tuple[int, int]:
    """A campaign's (raised cents, pledge count) as the totals table holds them."""
    with db.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT raised_cents, pledge_count FROM campaign_totals "
                "WHERE campaign_id = :c"
            ),
            {"c": campaign_id},
        ).one()
    return int(row[0]), int(row[1])


def user_principal(result: auth.AuthResult) -> Principal:
    assert result.user is not None
    return Principal(kind="user", id=result.user.id, role=Role(result.user.role))


MakeUser = Callable[..., Principal]
MakeAnon = Callable[[], tuple[Principal, str]]


class MakeCampaign(Protocol):
    def __call__(
        self, owner: Principal, review: bool = False, **changes: Any
    ) -> Campaign: ...


@pytest.fixture
def make_user(db: Database, keys: TokenKeys) -> MakeUser:
    """Register a donor through auth.register; returns its principal.

    The address counts as verified unless `verified=False`, so the outbox
    writes no verification mail: most tests count the mails of pledges.
    """

    def make(
        email: str | None = None, name: str = "Dana Donor", *, verified: bool = True
    ) -> Principal:
        result = auth.register(
            UnitOfWork(db),
            keys=keys,
            email=email or unique_email(),
            password=PASSWORD,
            name=name,
        )
        principal = user_principal(result)
        if verified:
            with UnitOfWork(db) as uow:
                uow.session.execute(
                    update(User)
                    .where(col(User.id) == principal.id)
                    .values(email_verified=True)
                )
                uow.commit()
        return principal

    return make


@pytest.fixture
def make_anon(db: Database, keys: TokenKeys) -> MakeAnon:
    """Start an anonymous session; returns its principal and token."""

    def make() -> tuple[Principal, str]:
        result = auth.start_anonymous_session(UnitOfWork(db), keys=keys)
        principal = auth.principal_from_token(keys, result.token)
        assert principal.kind == "anon"
        return principal, result.token

    return make


@pytest.fixture
def admin(db: Database) -> Principal:
    user = bootstrap.ensure_admin(
        UnitOfWork(db), email="root@example.org", password=PASSWORD
    )
    return Principal(kind="user", id=user.id, role=Role.ADMIN)


def campaign_data(**changes: Any) -> CampaignData:
    values: dict[str, Any] = {
        "title": f"Surgery for {uuid.uuid4().hex[:6]}",
        "description": "Help pay for an operation.",
        "category": "surgery",
        "goal_cents": 500_000,
        "currency": "USD",
    } | changes
    return CampaignData(**values)


@pytest.fixture
def make_campaign(db: Database) -> MakeCampaign:
    """Create a campaign through campaigns.create_campaign: ACTIVE, or
    IN_REVIEW with `review=True`."""

    def make(owner: Principal, review: bool = False, **changes: Any) -> Campaign:
        return create_campaign(
            UnitOfWork(db),
            principal=owner,
            data=campaign_data(**changes),
            review=review,
        )

    return make


@pytest.fixture
def organiser(make_user: MakeUser) -> Principal:
    return make_user(name="Olga Organiser")


@pytest.fixture
def campaign(make_campaign: MakeCampaign, organiser: Principal) -> Campaign:
    return make_campaign(organiser)


@pytest.fixture
def stripe_config(stripe_standin: StripeStandIn) -> StripeConfig:
    """Stripe as the stand-in plays it, with a short timeout: the stand-in
    holds a "timed out" answer (1.5 s) for longer than a call waits (0.5 s)."""
    stripe_standin.hold_seconds = 1.5
    return stripe_standin.config(timeout_seconds=0.5)


@pytest.fixture
def stripe_provider(
    db: Database, stripe_config: StripeConfig
) -> Iterator[StripeProvider]:
    provider = StripeProvider(db, stripe_config)
    yield provider
    provider.close()


class Decided(NamedTuple):
    approved: Campaign  # and then suspended
    rejected: Campaign


@pytest.fixture
def decided(
    uow: UnitOfWork,
    admin: Principal,
    organiser: Principal,
    make_campaign: MakeCampaign,
) -> Decided:
    """An admin's three decisions on two of the organiser's campaigns sent to
    review: one approved, then suspended ("Checking a report."); the other
    rejected, with a note holding markup ("No medical <estimate>.")."""
    approved = make_campaign(organiser, review=True)
    rejected = make_campaign(organiser, review=True)
    reviews.review_campaign(
        uow, principal=admin, campaign_id=approved.id, approve=True, note=None
    )
    reviews.review_campaign(
        uow,
        principal=admin,
        campaign_id=rejected.id,
        approve=False,
        note="No medical <estimate>.",
    )
    reviews.suspend_campaign(
        uow, principal=admin, campaign_id=approved.id, note="Checking a report."
    )
    return Decided(approved, rejected)

"""Pledges whose Stripe webhooks never came: reconcile asks Stripe (the
stand-in) and moves them as its answer says, through the same machine; the
command line does the same."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from careforall.cli import main
from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.models import Campaign, Pledge, PledgeTransition
from careforall.payments.stripe import StripeProvider
from careforall.services.payment_reconcile import Settled, reconcile_payments
from tests.helpers.pledges import give
from tests.helpers.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, StripeStandIn
from tests.services.conftest import MakeUser

HOUR = timedelta(hours=1)


@pytest.fixture
def provider(db: Database, stripe_standin: StripeStandIn) -> Iterator[StripeProvider]:
    stripe_standin.webhooks = "held"  # lost: no webhook ever comes
    provider = StripeProvider(db, stripe_standin.config())
    yield provider
    provider.close()


def age(db: Database, pledge_id: str, by: timedelta = 2 * HOUR) -> None:
    with db.write_session() as session:
        session.execute(
            update(Pledge)
            .where(col(Pledge.id) == pledge_id)
            .values(updated_at=utcnow() - by)
        )
        session.commit()


def status(db: Database, pledge_id: str) -> tuple[str, str | None]:
    with db.read() as session:
        row = session.get(Pledge, pledge_id)
        assert row is not None
        return row.status, row.failure_reason


def pledge_paid_at_stripe(
    db: Database,
    provider: StripeProvider,
    pledge_id: str,
    method: str = "pm_card_visa",
) -> None:
    """Stripe took the payment; the answer and the webhooks never arrived here."""
    with db.read() as session:
        row = session.get(Pledge, pledge_id)
        assert row is not None
    provider.authorize(
        pledge_id=pledge_id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        payment_method=method,
    )
    age(db, pledge_id)


def test_stuck_pledges_take_the_state_stripe_knows(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    donor = make_user()
    authorized, captured, declined, canceled, fresh, untried = (
        give(db, donor, campaign, 2500) for _ in range(6)
    )
    for pledge_id in (authorized, captured, canceled, fresh):
        pledge_paid_at_stripe(db, provider, pledge_id)
    pledge_paid_at_stripe(db, provider, declined, "pm_card_chargeDeclined")
    age(db, untried)
    age(db, fresh, timedelta(minutes=5))  # too young to ask about
    for pledge_id, action in ((captured, "capture"), (canceled, "cancel")):
        intent = stripe_standin.intent_for(pledge_id)
        stripe_standin.book.handle(
            "POST", f"/v1/payment_intents/{intent['id']}/{action}", {}
        )
    settled = reconcile_payments(db, provider=provider, older_than=HOUR)
    assert sorted(settled, key=lambda s: s.pledge_id) == sorted(
        [
            Settled(authorized, "PENDING", "AUTHORIZED"),
            Settled(captured, "PENDING", "CAPTURED"),
            Settled(declined, "PENDING", "FAILED"),
            Settled(canceled, "PENDING", "FAILED"),
        ],
        key=lambda s: s.pledge_id,
    )
    assert status(db, declined) == ("FAILED", "Your card was declined.")
    assert status(db, fresh) == ("PENDING", None)
    assert status(db, untried) == ("PENDING", None)
    with db.read() as session:
        sources = set(
            session.exec(
                select(PledgeTransition.source).where(
                    PledgeTransition.pledge_id == captured
                )
            ).all()
        )
    assert "reconcile" in sources
    # Asked again: nothing left to move.
    assert reconcile_payments(db, provider=provider, older_than=HOUR) == []


def test_a_payment_intent_whose_id_was_lost_is_found_by_its_pledge(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    pledge_id = give(db, make_user(), campaign, 2500)
    # Stripe authorized, but its answer was lost: the id was never kept here.
    stripe_standin.book.handle(
        "POST",
        "/v1/payment_intents",
        {
            "amount": "2500",
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": "true",
            "capture_method": "manual",
            "metadata[pledge_id]": pledge_id,
        },
    )
    age(db, pledge_id)
    assert provider.intent_id(pledge_id) is None
    [moved] = reconcile_payments(db, provider=provider, older_than=HOUR)
    assert moved == Settled(pledge_id, "PENDING", "AUTHORIZED")
    assert provider.intent_id(pledge_id) == stripe_standin.intent_for(pledge_id)["id"]
    assert stripe_standin.calls("search")


def test_stripe_unavailable_stops_the_run_and_changes_nothing(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    pledge_id = give(db, make_user(), campaign, 2500)
    pledge_paid_at_stripe(db, provider, pledge_id)
    stripe_standin.fail_next("retrieve", "500")
    assert reconcile_payments(db, provider=provider, older_than=HOUR) == []
    assert status(db, pledge_id) == ("PENDING", None)
    assert reconcile_payments(db, provider=provider, older_than=HOUR) != []
    assert status(db, pledge_id) == ("AUTHORIZED", None)


def test_the_command_reconciles_and_prints_what_moved(
    db: Database,
    db_url: str,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pledge_id = give(db, make_user(), campaign, 2500)
    pledge_paid_at_stripe(db, provider, pledge_id)
    for name, value in {
        "CAREFORALL_DATABASE_URL": db_url,
        "CAREFORALL_PAYMENT_PROVIDER": "stripe",
        "CAREFORALL_STRIPE_SECRET_KEY": SECRET_KEY,
        "CAREFORALL_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CAREFORALL_STRIPE_API_BASE": stripe_standin.url,
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["payments", "reconcile", "--older-than-minutes", "60"]) == 0
    out = capsys.readouterr().out
    assert f"{pledge_id}: PENDING -> AUTHORIZED" in out
    assert status(db, pledge_id) == ("AUTHORIZED", None)


def test_the_command_needs_stripe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CAREFORALL_PAYMENT_PROVIDER", raising=False)
    assert main(["payments", "reconcile"]) == 2
    assert "CAREFORALL_PAYMENT_PROVIDER=stripe" in capsys.readouterr().err

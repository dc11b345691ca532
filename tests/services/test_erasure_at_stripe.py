"""A deleted account's Customer at Stripe (the stand-in, through the official
library) goes too, with the cards saved to it: through the outbox, once the
erasure has committed, retried while Stripe does not answer, and parked for
an admin when Stripe is no longer configured."""

from __future__ import annotations

import dataclasses

import pytest
from sqlmodel import col, select

from careforall.db import Database
from careforall.models import Campaign, OutboxEvent, StripeCustomer
from careforall.payments.provider import PaymentProvider
from careforall.payments.simulated import SimulatedProvider
from careforall.payments.stripe import StripeProvider
from careforall.services import erasure
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.recurring import deliver, start_plan
from tests.helpers.stripe_standin import StripeStandIn
from tests.helpers.waiting import wait_until
from tests.services.conftest import PASSWORD, MakeUser


def erasure_events(db: Database) -> list[OutboxEvent]:
    with db.read() as session:
        return list(
            session.exec(
                select(OutboxEvent).where(
                    col(OutboxEvent.name) == "PaymentCustomerErased"
                )
            ).all()
        )


def deliver_until(
    db: Database, settings: Settings, provider: PaymentProvider, status: str
) -> OutboxEvent:
    """Run the outbox (its retries come due) until the erasure's event is
    `status`; the event."""

    def reached() -> bool:
        deliver(db, settings, provider)
        return erasure_events(db)[0].status == status

    wait_until(reached)
    return erasure_events(db)[0]


def kept_customers(db: Database) -> list[tuple[str, str]]:
    with db.read() as session:
        rows = session.exec(select(StripeCustomer)).all()
    return [(r.user_id, r.customer_id) for r in rows]


@pytest.fixture
def erased_customer(
    db: Database,
    stripe_provider: StripeProvider,
    campaign: Campaign,
    make_user: MakeUser,
) -> str:
    """The Stripe Customer of a donor with a recurring gift, whose account
    has just been deleted (its event not yet delivered)."""
    donor = make_user()
    start_plan(db, stripe_provider, donor, campaign, card="pm_card_visa")
    [(_, customer)] = kept_customers(db)
    erasure.delete_account(UnitOfWork(db), principal=donor, password=PASSWORD)
    return customer


def test_the_customer_and_its_cards_are_deleted_at_stripe_once(
    db: Database,
    settings: Settings,
    stripe_provider: StripeProvider,
    stripe_standin: StripeStandIn,
    campaign: Campaign,
    make_user: MakeUser,
) -> None:
    donor, other = make_user(), make_user()
    start_plan(db, stripe_provider, donor, campaign, card="pm_card_visa")
    start_plan(db, stripe_provider, other, campaign, card="pm_card_visa")
    theirs, others = (dict(kept_customers(db))[p.id] for p in (donor, other))

    erasure.delete_account(UnitOfWork(db), principal=donor, password=PASSWORD)
    # The row went with the account; Stripe is called only once that commits.
    assert kept_customers(db) == [(other.id, others)]
    assert theirs in stripe_standin.book.customers
    [event] = erasure_events(db)
    assert event.processed_at is None

    deliver(db, settings, stripe_provider)
    assert set(stripe_standin.book.customers) == {others}
    cards = stripe_standin.book.payment_methods.values()
    assert [c["customer"] for c in cards if c["customer"] is not None] == [others]
    deletes = [r for r in stripe_standin.calls("customer") if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"/v1/customers/{theirs}"]
    deliver(db, settings, stripe_provider)  # delivered: not called again
    assert (
        len([r for r in stripe_standin.calls("customer") if r.method == "DELETE"]) == 1
    )
    [event] = erasure_events(db)
    assert event.processed_at is not None and event.status == "done"


def test_stripe_not_answering_is_retried_and_a_customer_already_gone_is_done(
    db: Database,
    settings: Settings,
    stripe_provider: StripeProvider,
    stripe_standin: StripeStandIn,
    erased_customer: str,
) -> None:
    customer = erased_customer
    stripe_standin.fail_next("customer", "500")
    quick = dataclasses.replace(settings, outbox_base_delay=0.05)

    deliver(db, quick, stripe_provider)
    [event] = erasure_events(db)
    assert (event.status, event.attempts) == ("pending", 1)
    assert "Stripe" in (event.last_error or "")
    assert customer in stripe_standin.book.customers

    # Deleted meanwhile (from Stripe's dashboard, say): a second delete is
    # refused as missing, which is what was wanted.
    stripe_standin.book.customers.pop(customer)
    deliver_until(db, quick, stripe_provider, "done")


def test_without_stripe_configured_the_event_is_parked_for_an_admin(
    db: Database,
    settings: Settings,
    stripe_provider: StripeProvider,
    stripe_standin: StripeStandIn,
    erased_customer: str,
) -> None:
    customer = erased_customer
    simulated = SimulatedProvider(db)
    quick = dataclasses.replace(settings, outbox_base_delay=0.01, outbox_max_attempts=2)
    event = deliver_until(db, quick, simulated, "dead")
    assert customer in (event.last_error or "")
    assert "configure Stripe" in (event.last_error or "")
    assert customer in stripe_standin.book.customers  # nothing was deleted

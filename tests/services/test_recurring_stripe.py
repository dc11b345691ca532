"""Recurring gifts with Stripe (through the local stand-in and the official
library): the card saved to the donor's Customer with a SetupIntent, the
first period charged with the donor there, each later one off-session, once
whatever Stripe's answers do; a card whose bank wants the donor walks the
retry schedule to PAUSED; a new card is used from the next period; cancel
stops the charges."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from careforall.broadcaster import Broadcaster
from careforall.cli import recurring_run
from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import BadUserInput, ProviderBusy
from careforall.domain.recurring import RecurringInterval, period_due_at
from careforall.domain.rules import Principal
from careforall.models import (
    Campaign,
    Mail,
    Notification,
    Pledge,
    RecurringDonation,
    StripeCustomer,
)
from careforall.outbox.dispatcher import Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.outbox.recurring import RecurringScheduler
from careforall.payment_config import StripeConfig
from careforall.payments.simulated import SimulatedProvider
from careforall.payments.stripe import StripeProvider
from careforall.payments.stripe_calls import AUTHENTICATION_REQUIRED
from careforall.services import recurring
from careforall.services.recurring import RecurringData
from careforall.services.recurring_charges import run_due
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, StripeStandIn
from tests.services.conftest import MakeUser


def _config(standin: StripeStandIn) -> StripeConfig:
    # A short timeout: the stand-in holds a "timed out" answer for longer.
    return StripeConfig(
        secret_key=SECRET_KEY,
        webhook_secret=WEBHOOK_SECRET,
        api_base=standin.url,
        timeout_seconds=0.5,
    )


@pytest.fixture
def provider(db: Database, stripe_standin: StripeStandIn) -> Iterator[StripeProvider]:
    stripe_standin.hold_seconds = 1.5
    provider = StripeProvider(db, _config(stripe_standin))
    yield provider
    provider.close()


def _start(
    db: Database,
    provider: StripeProvider,
    donor: Principal,
    campaign: Campaign,
    *,
    card: str = "pm_card_visa",
    key: str = "plan-1",
) -> RecurringDonation:
    return recurring.create_recurring_donation(
        UnitOfWork(db),
        provider=provider,
        principal=donor,
        data=RecurringData(
            campaign_id=campaign.id,
            amount_cents=2_500,
            payment_method=card,
            idempotency_key=key,
        ),
    )


def _update_card(
    db: Database, provider: StripeProvider, plan: RecurringDonation, card: str
) -> RecurringDonation:
    return recurring.update_recurring_donation(
        UnitOfWork(db),
        provider=provider,
        principal=Principal(kind="user", id=plan.donor_user_id),
        plan_id=plan.id,
        payment_method=card,
    )


def _plan(db: Database, plan_id: str) -> RecurringDonation:
    with db.read() as session:
        plan = session.get(RecurringDonation, plan_id)
        assert plan is not None
        return plan


def _charges(db: Database, plan_id: str) -> list[Pledge]:
    with db.read() as session:
        return list(
            session.exec(
                select(Pledge)
                .where(Pledge.recurring_donation_id == plan_id)
                .order_by(col(Pledge.recurring_period), col(Pledge.recurring_attempt))
            ).all()
        )


def _due(plan: RecurringDonation, period: int) -> datetime:
    return period_due_at(plan.started_at, RecurringInterval.MONTHLY, period)


def _authorize_keys(standin: StripeStandIn) -> list[str | None]:
    return [
        r.idempotency_key
        for r in standin.calls("create")
        if r.path == "/v1/payment_intents"
    ]


def test_the_card_is_saved_to_the_donors_customer_and_the_first_period_charged(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    donor = make_user()
    plan = _start(db, provider, donor, campaign)
    assert (plan.status, plan.period) == ("ACTIVE", 1)
    [customer] = stripe_standin.book.customers.values()
    assert customer["metadata"] == {"user_id": donor.id}
    [made] = stripe_standin.calls("customer")
    assert made.idempotency_key == f"careforall:{donor.id}:customer"
    [setup] = stripe_standin.calls("setup")
    assert setup.idempotency_key == f"careforall:{donor.id}:setup:pm_card_visa"
    assert setup.params["usage"] == "off_session"
    [saved] = stripe_standin.book.payment_methods.values()
    assert saved["customer"] == customer["id"]
    assert plan.payment_method == f"{customer['id']}/{saved['id']}"

    [first] = _charges(db, plan.id)
    assert first.status == "AUTHORIZED"
    intent = stripe_standin.intent_for(first.id)
    assert intent["customer"] == customer["id"]
    assert intent["payment_method"] == saved["id"]
    assert intent["setup_future_usage"] == "off_session"  # the donor is there
    assert intent["off_session"] is False
    assert intent["capture_method"] == "manual"
    assert _authorize_keys(stripe_standin) == [f"careforall:{first.id}:authorize"]

    # A second plan of the same donor: the same Customer, made once.
    _start(db, provider, donor, campaign, key="plan-2")
    assert len(stripe_standin.calls("customer")) == 1
    with db.read() as session:
        kept = session.exec(select(StripeCustomer)).all()
    assert [(k.user_id, k.customer_id) for k in kept] == [(donor.id, customer["id"])]


def test_a_card_stripe_refuses_is_not_kept_and_nothing_is_charged(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    donor = make_user()
    for card in ("pm_card_chargeDeclined", "pm_card_ok"):
        with pytest.raises(BadUserInput):
            _start(db, provider, donor, campaign, card=card)
    with db.read() as session:
        assert session.exec(select(RecurringDonation)).all() == []
    assert stripe_standin.book.payment_intents == {}
    assert stripe_standin.effects("authorize") == []


def test_a_run_thirteen_months_on_charges_twelve_periods_off_session_each_once(
    db: Database,
    settings: Settings,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = _start(db, provider, make_user(), campaign)
    on_stripe = dataclasses.replace(
        settings, payment_provider="stripe", stripe=_config(stripe_standin)
    )
    now = (_due(plan, 13) - timedelta(seconds=1)).isoformat()
    # Period 1's answer is lost (a timeout), then Stripe fails (500): each
    # run stops there, and the next asks again with the same key.
    stripe_standin.fail_next("create", "timeout")
    assert recurring_run(on_stripe, now) == 2
    assert "did not answer" in capsys.readouterr().err
    stripe_standin.fail_next("create", "500")
    assert recurring_run(on_stripe, now) == 2
    assert recurring_run(on_stripe, now) == 0
    assert "12 period(s) charged" in capsys.readouterr().out
    assert recurring_run(on_stripe, now) == 0  # nothing more is due
    assert "0 period(s) charged" in capsys.readouterr().out

    charges = _charges(db, plan.id)
    assert [(p.recurring_period, p.status) for p in charges] == [
        (period, "AUTHORIZED") for period in range(13)
    ]
    keys = _authorize_keys(stripe_standin)
    assert set(keys) == {f"careforall:{p.id}:authorize" for p in charges}
    second = f"careforall:{charges[1].id}:authorize"
    assert keys.count(second) == 3  # timed out, 500, then the stored answer
    authorized = stripe_standin.effects("authorize")
    assert len(authorized) == 13
    assert len({e.payment_intent for e in authorized}) == 13
    for pledge in charges[1:]:
        intent = stripe_standin.intent_for(pledge.id)
        assert intent["off_session"] is True
        assert intent["setup_future_usage"] is None
        assert intent["capture_method"] == "manual"
    assert _plan(db, plan.id).period == 13

    # The outbox captures each, as any pledge's.
    _deliver(db, settings, provider)
    assert len(stripe_standin.effects("capture")) == 13
    assert {p.status for p in _charges(db, plan.id)} == {"CAPTURED"}


def _deliver(db: Database, settings: Settings, provider: StripeProvider) -> None:
    """Run the outbox until nothing is due."""
    dispatcher = Dispatcher(
        HandlerContext(db=db, settings=settings, provider=provider), Broadcaster()
    )
    while dispatcher.process_due().processed:
        pass


def test_a_card_needing_authentication_off_session_pauses_the_plan_and_tells(
    db: Database,
    settings: Settings,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    donor = make_user()
    plan = _start(db, provider, donor, campaign)
    _update_card(db, provider, plan, "pm_card_authenticationRequired")
    now = _due(plan, 1)
    for delay in (1, 3, 7):
        run_due(db, provider=provider, now=now)
        after = _plan(db, plan.id)
        assert (after.status, after.next_charge_at) == (
            "ACTIVE",
            now + timedelta(days=delay),
        )
        assert after.failure_reason == AUTHENTICATION_REQUIRED
        now += timedelta(days=delay)
    run_due(db, provider=provider, now=now)
    paused = _plan(db, plan.id)
    assert (paused.status, paused.next_charge_at) == ("PAUSED", None)
    tries = [p for p in _charges(db, plan.id) if p.recurring_period == 1]
    assert [(p.recurring_attempt, p.status) for p in tries] == [
        (attempt, "FAILED") for attempt in range(4)
    ]
    assert {p.failure_reason for p in tries} == {AUTHENTICATION_REQUIRED}
    assert len(stripe_standin.effects("decline")) == 4
    run_due(db, provider=provider, now=now + timedelta(days=90))
    assert len(_charges(db, plan.id)) == 5  # paused: nothing more

    _deliver(db, settings, provider)
    with db.read() as session:
        kinds = session.exec(
            select(Notification.kind).where(
                Notification.recipient_user_id == donor.id,
                col(Notification.kind).startswith("RECURRING"),
            )
        ).all()
        [mail] = session.exec(
            select(Mail).where(Mail.kind == "recurring_stopped")
        ).all()
    assert list(kinds) == ["RECURRING_PAUSED"]
    assert "update the card" in mail.text
    assert "confirm this payment" in mail.text


def test_an_updated_card_is_used_from_the_next_period(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    plan = _start(db, provider, make_user(), campaign)
    updated = _update_card(db, provider, plan, "pm_card_mastercard")
    customer, new_card = updated.payment_method.split("/")
    assert updated.payment_method != plan.payment_method
    assert customer == plan.payment_method.split("/")[0]
    run_due(db, provider=provider, now=_due(plan, 1))
    first, second = _charges(db, plan.id)
    assert stripe_standin.intent_for(second.id)["payment_method"] == new_card
    assert stripe_standin.intent_for(first.id)["payment_method"] != new_card
    assert stripe_standin.book.payment_methods[new_card]["card"] == (
        "pm_card_mastercard"
    )


def test_cancel_stops_the_charges(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    donor = make_user()
    plan = _start(db, provider, donor, campaign)
    run_due(db, provider=provider, now=_due(plan, 1))
    recurring.cancel_recurring_donation(
        UnitOfWork(db), principal=donor, plan_id=plan.id
    )
    run_due(db, provider=provider, now=_due(plan, 12))
    assert [p.recurring_period for p in _charges(db, plan.id)] == [0, 1]
    assert len(_authorize_keys(stripe_standin)) == 2


def test_a_first_period_stripe_did_not_answer_is_charged_once_when_asked_again(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    donor = make_user()
    stripe_standin.fail_next("create", "timeout")
    with pytest.raises(ProviderBusy):
        _start(db, provider, donor, campaign)
    plan = _start(db, provider, donor, campaign)  # the same request again
    assert (plan.status, plan.period) == ("ACTIVE", 1)
    [first] = _charges(db, plan.id)
    assert first.status == "AUTHORIZED"
    assert len(stripe_standin.effects("authorize")) == 1
    assert _authorize_keys(stripe_standin) == [f"careforall:{first.id}:authorize"] * 2


def test_a_card_saved_with_another_provider_is_left_alone(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    """A plan started under the simulation, charged after a switch to Stripe:
    the run charges nothing for it, says so, and goes on with the others."""
    donor = make_user()
    simulated = recurring.create_recurring_donation(
        UnitOfWork(db),
        provider=SimulatedProvider(db),
        principal=donor,
        data=RecurringData(
            campaign_id=campaign.id,
            amount_cents=2_500,
            payment_method="pm_card_ok",
            idempotency_key="simulated",
        ),
    )
    on_stripe = _start(db, provider, make_user(), campaign)
    done = run_due(db, provider=provider, now=_due(on_stripe, 1))
    assert done.unknown_cards == [simulated.id]
    assert done.charged == 1
    assert _plan(db, simulated.id).period == 1  # still due
    assert [p.recurring_period for p in _charges(db, on_stripe.id)] == [0, 1]
    assert len(stripe_standin.effects("authorize")) == 2


def test_a_saved_card_declined_off_session_is_retried_on_the_schedule(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    plan = _start(db, provider, make_user(), campaign)
    _update_card(db, provider, plan, "pm_card_chargeCustomerFail")
    due = _due(plan, 1)
    run_due(db, provider=provider, now=due)
    after = _plan(db, plan.id)
    assert (after.status, after.attempt) == ("ACTIVE", 1)
    assert after.next_charge_at == due + timedelta(days=1)
    assert after.failure_reason == "Your card was declined."
    declined = _charges(db, plan.id)[1]
    assert (declined.recurring_period, declined.status) == (1, "FAILED")
    assert stripe_standin.intent_for(declined.id)["off_session"] is True
    assert [e.kind for e in stripe_standin.effects() if e.kind != "setup"] == [
        "authorize",
        "decline",
    ]


def test_the_servers_scheduler_says_so_when_stripe_does_not_answer(
    db: Database,
    provider: StripeProvider,
    stripe_standin: StripeStandIn,
    make_user: MakeUser,
    campaign: Campaign,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = _start(db, provider, make_user(), campaign)
    with db.write_session() as session:
        session.execute(
            update(RecurringDonation)
            .where(col(RecurringDonation.id) == plan.id)
            .values(next_charge_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    stripe_standin.fail_next("create", "timeout")
    scheduler = RecurringScheduler(db, provider, every=60)
    with caplog.at_level(logging.WARNING, logger="careforall.recurring"):
        assert asyncio.run(scheduler.charge_due()) == 60
    assert "recurring gifts run stopped: no answer" in caplog.text
    assert asyncio.run(scheduler.charge_due()) == 60  # the next round
    assert [(p.recurring_period, p.status) for p in _charges(db, plan.id)] == [
        (0, "AUTHORIZED"),
        (1, "AUTHORIZED"),
    ]
    assert len(stripe_standin.effects("authorize")) == 2

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
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from careforall.cli import recurring_run
from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import BadUserInput, ProviderBusy
from careforall.domain.rules import Principal
from careforall.models import (
    Campaign,
    Mail,
    Notification,
    Pledge,
    RecurringDonation,
    StripeCustomer,
)
from careforall.outbox.recurring import RecurringScheduler
from careforall.payment_config import StripeConfig
from careforall.payments.simulated import SimulatedProvider
from careforall.payments.stripe import StripeProvider
from careforall.payments.stripe_calls import AUTHENTICATION_REQUIRED
from careforall.services import recurring
from careforall.services.recurring_charges import RunResult, run_due
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.recurring import deliver, due, plan_charges, plan_row, start_plan
from tests.helpers.stripe_standin import StripeStandIn
from tests.services.conftest import MakeUser


@dataclass
class StripeGifts:
    """Monthly gifts of 25.00 to one campaign, charged through Stripe (the
    stand-in), with its short timeout."""

    db: Database
    provider: StripeProvider
    standin: StripeStandIn
    campaign: Campaign

    def start(
        self, donor: Principal, *, card: str = "pm_card_visa", key: str = "plan-1"
    ) -> RecurringDonation:
        return start_plan(
            self.db, self.provider, donor, self.campaign, card=card, key=key
        )

    def update_card(self, plan: RecurringDonation, card: str) -> RecurringDonation:
        return recurring.update_recurring_donation(
            UnitOfWork(self.db),
            provider=self.provider,
            principal=Principal(kind="user", id=plan.donor_user_id),
            plan_id=plan.id,
            payment_method=card,
        )

    def run_due(self, now: datetime) -> RunResult:
        return run_due(self.db, provider=self.provider, now=now)

    def plan(self, plan_id: str) -> RecurringDonation:
        return plan_row(self.db, plan_id)

    def charges(self, plan_id: str) -> list[Pledge]:
        return plan_charges(self.db, plan_id)

    def authorize_keys(self) -> list[str | None]:
        return [
            r.idempotency_key
            for r in self.standin.calls("create")
            if r.path == "/v1/payment_intents"
        ]


@pytest.fixture
def gifts(
    db: Database,
    stripe_provider: StripeProvider,
    stripe_standin: StripeStandIn,
    campaign: Campaign,
) -> StripeGifts:
    return StripeGifts(db, stripe_provider, stripe_standin, campaign)


def test_the_card_is_saved_to_the_donors_customer_and_the_first_period_charged(
    gifts: StripeGifts,
    make_user: MakeUser,
) -> None:
    donor = make_user()
    plan = gifts.start(donor)
    assert (plan.status, plan.period) == ("ACTIVE", 1)
    [customer] = gifts.standin.book.customers.values()
    assert customer["metadata"] == {"user_id": donor.id}
    [made] = gifts.standin.calls("customer")
    assert made.idempotency_key == f"careforall:{donor.id}:customer"
    [setup] = gifts.standin.calls("setup")
    assert setup.idempotency_key == f"careforall:{donor.id}:setup:pm_card_visa"
    assert setup.params["usage"] == "off_session"
    [saved] = gifts.standin.book.payment_methods.values()
    assert saved["customer"] == customer["id"]
    assert plan.payment_method == f"{customer['id']}/{saved['id']}"

    [first] = gifts.charges(plan.id)
    assert first.status == "AUTHORIZED"
    intent = gifts.standin.intent_for(first.id)
    assert intent["customer"] == customer["id"]
    assert intent["payment_method"] == saved["id"]
    assert intent["setup_future_usage"] == "off_session"  # the donor is there
    assert intent["off_session"] is False
    assert intent["capture_method"] == "manual"
    assert gifts.authorize_keys() == [f"careforall:{first.id}:authorize"]

    # A second plan of the same donor: the same Customer, made once.
    gifts.start(donor, key="plan-2")
    assert len(gifts.standin.calls("customer")) == 1
    with gifts.db.read() as session:
        kept = session.exec(select(StripeCustomer)).all()
    assert [(k.user_id, k.customer_id) for k in kept] == [(donor.id, customer["id"])]


def test_a_card_stripe_refuses_is_not_kept_and_nothing_is_charged(
    gifts: StripeGifts,
    make_user: MakeUser,
) -> None:
    donor = make_user()
    for card in ("pm_card_chargeDeclined", "pm_card_ok"):
        with pytest.raises(BadUserInput):
            gifts.start(donor, card=card)
    with gifts.db.read() as session:
        assert session.exec(select(RecurringDonation)).all() == []
    assert gifts.standin.book.payment_intents == {}
    assert gifts.standin.effects("authorize") == []


def test_a_run_thirteen_months_on_charges_twelve_periods_off_session_each_once(
    gifts: StripeGifts,
    settings: Settings,
    stripe_config: StripeConfig,
    make_user: MakeUser,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = gifts.start(make_user())
    on_stripe = dataclasses.replace(
        settings, payment_provider="stripe", stripe=stripe_config
    )
    now = (due(plan, 13) - timedelta(seconds=1)).isoformat()
    # Period 1's answer is lost (a timeout), then Stripe fails (500): each
    # run stops there, and the next asks again with the same key.
    gifts.standin.fail_next("create", "timeout")
    assert recurring_run(on_stripe, now) == 2
    assert "did not answer" in capsys.readouterr().err
    gifts.standin.fail_next("create", "500")
    assert recurring_run(on_stripe, now) == 2
    assert recurring_run(on_stripe, now) == 0
    assert "12 period(s) charged" in capsys.readouterr().out
    assert recurring_run(on_stripe, now) == 0  # nothing more is due
    assert "0 period(s) charged" in capsys.readouterr().out

    charges = gifts.charges(plan.id)
    assert [(p.recurring_period, p.status) for p in charges] == [
        (period, "AUTHORIZED") for period in range(13)
    ]
    keys = gifts.authorize_keys()
    assert set(keys) == {f"careforall:{p.id}:authorize" for p in charges}
    second = f"careforall:{charges[1].id}:authorize"
    assert keys.count(second) == 3  # timed out, 500, then the stored answer
    authorized = gifts.standin.effects("authorize")
    assert len(authorized) == 13
    assert len({e.payment_intent for e in authorized}) == 13
    for pledge in charges[1:]:
        intent = gifts.standin.intent_for(pledge.id)
        assert intent["off_session"] is True
        assert intent["setup_future_usage"] is None
        assert intent["capture_method"] == "manual"
    assert gifts.plan(plan.id).period == 13

    # The outbox captures each, as any pledge's.
    deliver(gifts.db, settings, gifts.provider)
    assert len(gifts.standin.effects("capture")) == 13
    assert {p.status for p in gifts.charges(plan.id)} == {"CAPTURED"}


def test_a_card_needing_authentication_off_session_pauses_the_plan_and_tells(
    gifts: StripeGifts,
    settings: Settings,
    make_user: MakeUser,
) -> None:
    donor = make_user()
    plan = gifts.start(donor)
    gifts.update_card(plan, "pm_card_authenticationRequired")
    now = due(plan, 1)
    for delay in (1, 3, 7):
        gifts.run_due(now)
        after = gifts.plan(plan.id)
        assert (after.status, after.next_charge_at) == (
            "ACTIVE",
            now + timedelta(days=delay),
        )
        assert after.failure_reason == AUTHENTICATION_REQUIRED
        now += timedelta(days=delay)
    gifts.run_due(now)
    paused = gifts.plan(plan.id)
    assert (paused.status, paused.next_charge_at) == ("PAUSED", None)
    tries = [p for p in gifts.charges(plan.id) if p.recurring_period == 1]
    assert [(p.recurring_attempt, p.status) for p in tries] == [
        (attempt, "FAILED") for attempt in range(4)
    ]
    assert {p.failure_reason for p in tries} == {AUTHENTICATION_REQUIRED}
    assert len(gifts.standin.effects("decline")) == 4
    gifts.run_due(now + timedelta(days=90))
    assert len(gifts.charges(plan.id)) == 5  # paused: nothing more

    deliver(gifts.db, settings, gifts.provider)
    with gifts.db.read() as session:
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
    gifts: StripeGifts,
    make_user: MakeUser,
) -> None:
    plan = gifts.start(make_user())
    updated = gifts.update_card(plan, "pm_card_mastercard")
    customer, new_card = updated.payment_method.split("/")
    assert updated.payment_method != plan.payment_method
    assert customer == plan.payment_method.split("/")[0]
    gifts.run_due(due(plan, 1))
    first, second = gifts.charges(plan.id)
    assert gifts.standin.intent_for(second.id)["payment_method"] == new_card
    assert gifts.standin.intent_for(first.id)["payment_method"] != new_card
    assert gifts.standin.book.payment_methods[new_card]["card"] == (
        "pm_card_mastercard"
    )


def test_cancel_stops_the_charges(
    gifts: StripeGifts,
    make_user: MakeUser,
) -> None:
    donor = make_user()
    plan = gifts.start(donor)
    gifts.run_due(due(plan, 1))
    recurring.cancel_recurring_donation(
        UnitOfWork(gifts.db), principal=donor, plan_id=plan.id
    )
    gifts.run_due(due(plan, 12))
    assert [p.recurring_period for p in gifts.charges(plan.id)] == [0, 1]
    assert len(gifts.authorize_keys()) == 2


def test_a_first_period_stripe_did_not_answer_is_charged_once_when_asked_again(
    gifts: StripeGifts,
    make_user: MakeUser,
) -> None:
    donor = make_user()
    gifts.standin.fail_next("create", "timeout")
    with pytest.raises(ProviderBusy):
        gifts.start(donor)
    plan = gifts.start(donor)  # the same request again
    assert (plan.status, plan.period) == ("ACTIVE", 1)
    [first] = gifts.charges(plan.id)
    assert first.status == "AUTHORIZED"
    assert len(gifts.standin.effects("authorize")) == 1
    assert gifts.authorize_keys() == [f"careforall:{first.id}:authorize"] * 2


def test_a_card_saved_with_another_provider_is_left_alone(
    gifts: StripeGifts,
    make_user: MakeUser,
) -> None:
    """A plan started under the simulation, charged after a switch to Stripe:
    the run charges nothing for it, says so, and goes on with the others."""
    donor = make_user()
    simulated = start_plan(
        gifts.db,
        SimulatedProvider(gifts.db),
        donor,
        gifts.campaign,
        card="pm_card_ok",
        key="simulated",
    )
    on_stripe = gifts.start(make_user())
    done = gifts.run_due(due(on_stripe, 1))
    assert done.unknown_cards == [simulated.id]
    assert done.charged == 1
    assert gifts.plan(simulated.id).period == 1  # still due
    assert [p.recurring_period for p in gifts.charges(on_stripe.id)] == [0, 1]
    assert len(gifts.standin.effects("authorize")) == 2


def test_a_saved_card_declined_off_session_is_retried_on_the_schedule(
    gifts: StripeGifts,
    make_user: MakeUser,
) -> None:
    plan = gifts.start(make_user())
    gifts.update_card(plan, "pm_card_chargeCustomerFail")
    when = due(plan, 1)
    gifts.run_due(when)
    after = gifts.plan(plan.id)
    assert (after.status, after.attempt) == ("ACTIVE", 1)
    assert after.next_charge_at == when + timedelta(days=1)
    assert after.failure_reason == "Your card was declined."
    declined = gifts.charges(plan.id)[1]
    assert (declined.recurring_period, declined.status) == (1, "FAILED")
    assert gifts.standin.intent_for(declined.id)["off_session"] is True
    assert [e.kind for e in gifts.standin.effects() if e.kind != "setup"] == [
        "authorize",
        "decline",
    ]


def test_the_servers_scheduler_says_so_when_stripe_does_not_answer(
    gifts: StripeGifts,
    make_user: MakeUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = gifts.start(make_user())
    with gifts.db.write_session() as session:
        session.execute(
            update(RecurringDonation)
            .where(col(RecurringDonation.id) == plan.id)
            .values(next_charge_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    gifts.standin.fail_next("create", "timeout")
    scheduler = RecurringScheduler(gifts.db, gifts.provider, every=60)
    with caplog.at_level(logging.WARNING, logger="careforall.recurring"):
        assert asyncio.run(scheduler.charge_due()) == 60
    assert "recurring gifts run stopped: no answer" in caplog.text
    assert asyncio.run(scheduler.charge_due()) == 60  # the next round
    assert [(p.recurring_period, p.status) for p in gifts.charges(plan.id)] == [
        (0, "AUTHORIZED"),
        (1, "AUTHORIZED"),
    ]
    assert len(gifts.standin.effects("authorize")) == 2

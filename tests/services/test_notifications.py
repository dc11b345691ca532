"""Notifications through the real outbox: each event kind reaches the right
person exactly once (also when events are delivered again), the goal is
announced once, a guest's notifications follow them to their account, feeds
and marking read are each person's own, and admin alerts survive a flood as
one notification."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import Forbidden, NotFound, Unauthenticated
from careforall.domain.rules import Principal
from careforall.models import (
    AlertThrottle,
    Campaign,
    Notification,
    OutboxEvent,
    User,
)
from careforall.outbox.handlers import on_dead_letter
from careforall.services import alerts, auth, notifications, webhook_log
from careforall.services.auth import TokenKeys
from careforall.services.unit_of_work import UnitOfWork
from careforall.services.webhook_log import WebhookEntry, WebhookOutcome
from careforall.settings import Settings
from tests.helpers.outbox import deliver, deliver_everything_again
from tests.helpers.pledges import give, paid, provider_says
from tests.services.conftest import (
    PASSWORD,
    MakeAnon,
    MakeCampaign,
    MakeUser,
    unique_email,
    user_principal,
)

# --- helpers -------------------------------------------------------------------


def feed(db: Database, who: Principal) -> list[tuple[str, str | None]]:
    """(kind, pledge id) of each notification, newest first."""
    with db.read() as session:
        page = notifications.feed(session, principal=who, first=100, after=None)
    return [(n.kind, n.pledge_id) for n in page.items]


def unread(db: Database, who: Principal) -> int:
    with db.read() as session:
        return notifications.unread_count(session, principal=who)


def notification_count(db: Database) -> int:
    with db.read() as session:
        return len(session.exec(select(Notification.id)).all())


# --- donors and organisers -------------------------------------------------------


def test_a_capture_tells_the_donor_and_the_organiser_exactly_once(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    organiser: Principal,
    campaign: Campaign,
) -> None:
    donor = make_user()
    pledge_id = give(db, donor, campaign, 2500)
    provider_says(db, pledge_id, "captured")  # implies AUTHORIZED, then CAPTURED
    assert deliver(db, settings) >= 3  # created, authorized, captured

    assert feed(db, donor) == [("PAYMENT_CAPTURED", pledge_id)]
    assert feed(db, organiser) == [("DONATION_RECEIVED", pledge_id)]
    assert unread(db, donor) == unread(db, organiser) == 1
    with db.read() as session:
        note = session.exec(
            select(Notification).where(Notification.kind == "DONATION_RECEIVED")
        ).one()
    assert "Dana gave 25.00 USD" in note.body and campaign.title in note.body

    # Every event delivered again (a crash before the batch was marked, a
    # replayed dead letter): nobody hears twice.
    assert deliver_everything_again(db, settings) >= 3
    assert feed(db, donor) == [("PAYMENT_CAPTURED", pledge_id)]
    assert feed(db, organiser) == [("DONATION_RECEIVED", pledge_id)]
    assert notification_count(db) == 2


def test_a_decline_and_a_refund_tell_only_the_donor(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    organiser: Principal,
    campaign: Campaign,
) -> None:
    donor = make_user()
    declined = give(db, donor, campaign, 700)
    refunded = give(db, donor, campaign, 900)
    provider_says(db, declined, "failed", reason="Insufficient funds.")
    provider_says(db, refunded, "captured")
    deliver(db, settings)
    provider_says(db, refunded, "refunded")
    deliver(db, settings)
    deliver_everything_again(db, settings)

    assert feed(db, donor) == [
        ("PAYMENT_REFUNDED", refunded),
        ("PAYMENT_CAPTURED", refunded),
        ("PAYMENT_FAILED", declined),
    ]
    # The organiser heard of the one donation that was captured, not of the
    # decline, and the refund is the donor's business.
    assert feed(db, organiser) == [("DONATION_RECEIVED", refunded)]
    with db.read() as session:
        failed = session.exec(
            select(Notification).where(Notification.pledge_id == declined)
        ).one()
    assert "Insufficient funds" in failed.body and "Nothing was charged" in failed.body


def test_the_goal_is_announced_once_when_the_total_first_reaches_it(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    organiser: Principal,
    make_campaign: MakeCampaign,
) -> None:
    campaign = make_campaign(organiser, goal_cents=5000)
    donor = make_user()
    first, second, third = (give(db, donor, campaign, a) for a in (3000, 2000, 1000))

    provider_says(db, first, "captured")
    deliver(db, settings)
    assert "GOAL_REACHED" not in [kind for kind, _ in feed(db, organiser)]

    provider_says(db, second, "captured")  # 5000 of 5000: reached
    deliver(db, settings)
    assert feed(db, organiser)[0] == ("GOAL_REACHED", None)

    # Below the goal again, then above it: still the one announcement.
    provider_says(db, first, "refunded")
    deliver(db, settings)
    provider_says(db, third, "captured")
    deliver(db, settings)
    deliver_everything_again(db, settings)
    kinds = [kind for kind, _ in feed(db, organiser)]
    assert kinds.count("GOAL_REACHED") == 1
    assert kinds.count("DONATION_RECEIVED") == 3


def test_a_gift_to_ones_own_campaign_is_no_news_to_its_organiser(
    db: Database, settings: Settings, organiser: Principal, campaign: Campaign
) -> None:
    pledge_id = paid(db, organiser, campaign, 1200)
    deliver(db, settings)
    assert feed(db, organiser) == [("PAYMENT_CAPTURED", pledge_id)]


def test_a_guests_notifications_follow_them_to_their_account(
    db: Database,
    settings: Settings,
    keys: TokenKeys,
    make_anon: MakeAnon,
    organiser: Principal,
    campaign: Campaign,
) -> None:
    guest, token = make_anon()
    pledge_id = paid(db, guest, campaign, 4000)
    deliver(db, settings)
    assert feed(db, guest) == [("PAYMENT_CAPTURED", pledge_id)]

    account = user_principal(
        auth.register(
            UnitOfWork(db),
            keys=keys,
            email=unique_email(),
            password=PASSWORD,
            name="Gale Guest",
            anonymous_token=token,
        )
    )
    assert feed(db, account) == [("PAYMENT_CAPTURED", pledge_id)]
    assert unread(db, account) == 1
    assert feed(db, guest) == []  # moved, not copied

    # What happens to the pledge later is the account's news.
    provider_says(db, pledge_id, "refunded")
    deliver(db, settings)
    deliver_everything_again(db, settings)
    assert feed(db, account) == [
        ("PAYMENT_REFUNDED", pledge_id),
        ("PAYMENT_CAPTURED", pledge_id),
    ]
    assert feed(db, guest) == []


# --- feeds and marking read ---------------------------------------------------------


def test_feeds_and_marking_read_are_each_persons_own(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    make_anon: MakeAnon,
    campaign: Campaign,
) -> None:
    alice, bob = make_user(), make_user()
    guest = make_anon()[0]
    ids = {}
    for who in (alice, bob, guest):
        paid(db, who, campaign, 500)
        deliver(db, settings)
        with db.read() as session:
            page = notifications.feed(session, principal=who, first=10, after=None)
        (ids[who.id],) = [n.id for n in page.items]

    with pytest.raises(Unauthenticated):
        notifications.mark_read(UnitOfWork(db), principal=None, ids=[ids[alice.id]])
    for stranger in (bob, guest):
        with pytest.raises(Forbidden):
            notifications.mark_read(
                UnitOfWork(db), principal=stranger, ids=[ids[alice.id]]
            )
    # All or nothing: one of someone else's among one's own marks none.
    with pytest.raises(Forbidden):
        notifications.mark_read(
            UnitOfWork(db), principal=bob, ids=[ids[bob.id], ids[alice.id]]
        )
    with pytest.raises(NotFound):
        notifications.mark_read(
            UnitOfWork(db), principal=bob, ids=[ids[bob.id], "ntf_nope"]
        )
    assert unread(db, alice) == unread(db, bob) == unread(db, guest) == 1
    # Marking all is only one's own, too.
    result = notifications.mark_all_read(UnitOfWork(db), principal=guest)
    assert (result.marked, result.unread_count) == (1, 0)
    assert unread(db, alice) == unread(db, bob) == 1

    done = notifications.mark_read(UnitOfWork(db), principal=bob, ids=[ids[bob.id]])
    again = notifications.mark_read(UnitOfWork(db), principal=bob, ids=[ids[bob.id]])
    assert (done.marked, done.unread_count, again.marked) == (1, 0, 0)
    assert unread(db, alice) == 1


def test_marking_all_up_to_an_id_leaves_newer_ones_unread(
    db: Database, settings: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    for amount in (100, 200, 300):
        paid(db, donor, campaign, amount)
        deliver(db, settings)
    with db.read() as session:
        newest, middle, oldest = notifications.feed(
            session, principal=donor, first=10, after=None
        ).items

    result = notifications.mark_all_read(
        UnitOfWork(db), principal=donor, up_to=middle.id
    )
    assert (result.marked, result.unread_count) == (2, 1)
    with db.read() as session:
        left = notifications.feed(
            session, principal=donor, first=10, after=None, unread_only=True
        ).items
    assert [n.id for n in left] == [newest.id]


# --- admins: dead letters and rejected webhooks ---------------------------------


def park(db: Database, *, name: str = "PledgeStatusChanged") -> int:
    """What the dispatcher does when an event fails its last try (with the hook)."""
    with UnitOfWork(db) as uow:
        row = OutboxEvent(name=name, payload="{}", attempts=8, status="dead")
        uow.session.add(row)
        uow.session.flush()
        on_dead_letter(
            uow.session, row, attempts=8, error="OperationalError: disk I/O error"
        )
        uow.commit()
    assert row.id is not None
    return row.id


def test_a_dead_letter_alerts_every_admin_and_a_flood_alerts_once(
    db: Database, admin: Principal, make_user: MakeUser
) -> None:
    other_admin = make_user()
    with UnitOfWork(db) as uow:
        uow.session.execute(
            update(User).where(col(User.id) == other_admin.id).values(role="ADMIN")
        )
        uow.commit()
    donor = make_user()

    first = park(db)
    for _ in range(30):
        park(db)
    for who in (admin, other_admin):
        assert feed(db, who) == [("DEAD_LETTER", None)]
    assert feed(db, donor) == []
    with db.read() as session:
        alert = session.exec(select(Notification)).first()
    assert alert is not None and f"#{first}" in alert.body
    assert "disk I/O error" in alert.body and "8 times" in alert.body

    # Once the window has passed, the next one is told, with the count missed.
    with UnitOfWork(db) as uow:
        uow.session.execute(
            update(AlertThrottle).values(
                last_sent_at=utcnow() - alerts.DEAD_LETTER_ALERT_EVERY
            )
        )
        uow.commit()
    park(db)
    kinds = feed(db, admin)
    assert kinds == [("DEAD_LETTER", None)] * 2
    with db.read() as session:
        newest = notifications.feed(session, principal=admin, first=1, after=None)
    assert "30 more events were parked" in newest.items[0].body


def test_the_dispatcher_tells_admins_when_it_parks_an_event(
    db: Database, settings: Settings, admin: Principal
) -> None:
    with UnitOfWork(db) as uow:
        uow.session.add(OutboxEvent(name="NoSuchEvent", payload="{}"))
        uow.commit()
    deliver(db, settings.with_(outbox_max_attempts=1), all_succeed=False)
    with db.read() as session:
        parked = session.exec(select(OutboxEvent.status)).all()
    assert parked == ["dead"]
    assert feed(db, admin) == [("DEAD_LETTER", None)]


def refuse(db: Database, outcome: WebhookOutcome, times: int) -> None:
    for _ in range(times):
        webhook_log.record(
            UnitOfWork(db),
            entry=WebhookEntry(outcome=outcome, status_code=400, reason="bad"),
        )


def test_a_flood_of_rejected_webhooks_alerts_each_admin_once(
    db: Database, admin: Principal, make_user: MakeUser
) -> None:
    donor = make_user()
    signature = WebhookOutcome.REJECTED_SIGNATURE
    refuse(db, signature, alerts.WEBHOOK_REJECTIONS - 1)
    refuse(db, WebhookOutcome.DUPLICATE, 5)  # not a refusal
    assert feed(db, admin) == []  # a few bad requests are no alarm

    refuse(db, signature, 1)  # the tenth within the window
    assert feed(db, admin) == [("WEBHOOKS_REJECTED", None)]
    refuse(db, signature, 100)  # the flood goes on
    assert feed(db, admin) == [("WEBHOOKS_REJECTED", None)]
    assert feed(db, donor) == []
    with db.read() as session:
        (alert,) = notifications.feed(
            session, principal=admin, first=5, after=None
        ).items
    assert "signature" in alert.body and "CAREFORALL_WEBHOOK_SECRET" in alert.body

    # Another kind of refusal is another alert, limited on its own.
    refuse(db, WebhookOutcome.REJECTED_UNPROCESSABLE, alerts.WEBHOOK_REJECTIONS + 20)
    kinds = [kind for kind, _ in feed(db, admin)]
    assert kinds == ["WEBHOOKS_REJECTED"] * 2


def test_refusals_spread_over_more_than_the_window_raise_no_alert(
    db: Database, admin: Principal
) -> None:
    refuse(db, WebhookOutcome.REJECTED_SIGNATURE, alerts.WEBHOOK_REJECTIONS - 1)
    with UnitOfWork(db) as uow:
        uow.session.execute(
            update(webhook_log.WebhookLog).values(
                received_at=utcnow() - alerts.WEBHOOK_WINDOW - timedelta(seconds=1)
            )
        )
        uow.commit()
    refuse(db, WebhookOutcome.REJECTED_SIGNATURE, 1)
    assert feed(db, admin) == []

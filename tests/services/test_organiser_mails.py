"""The organisers' mails through the real outbox and a real SMTP server: the
goal-reached mail once per campaign however the totals are redelivered; the
hourly digest, one mail listing every donation of the hour and another the
next hour; both respect the organiser's choices and carry an unsubscribe
link (text, HTML and RFC 8058 headers)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.rules import Principal
from careforall.models import Campaign
from careforall.services.mail_preferences import (
    MailChoice,
    read_unsubscribe_token,
    unsubscribe_key,
    update_mail_preferences,
)
from careforall.services.organiser_mails import write_due_digests
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.mails import ORG, all_mails, email_of, parts, send_due
from tests.helpers.outbox import deliver, deliver_everything_again
from tests.helpers.pledges import paid, provider_says
from tests.helpers.smtp import MailServer
from tests.services.conftest import MakeCampaign, MakeUser

SECRET = "organiser-mails-secret-" + "s" * 40


@pytest.fixture
def linked(mailing: Settings) -> Settings:
    """Mail settings with a known JWT secret (the links' key derives from it)."""
    return mailing.with_(jwt_secret=SECRET, public_url="https://give.example")


def turn_off(db: Database, user: Principal, choice: MailChoice) -> None:
    update_mail_preferences(UnitOfWork(db), principal=user, changes={choice: False})


def check_link(message: object, user: Principal, choice: MailChoice) -> None:
    """The mail's unsubscribe link is in both parts and in the headers, and
    names this user and choice."""
    link = message["List-Unsubscribe"]  # type: ignore[index]
    assert link.startswith("<https://give.example/unsubscribe?token=")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # type: ignore[index]
    url = link[1:-1]
    text, html = parts(message)  # type: ignore[arg-type]
    assert url in text and f'href="{url}"' in html
    token = url.split("token=", 1)[1]
    assert read_unsubscribe_token(unsubscribe_key(SECRET), token) == (user.id, choice)


def test_goal_reached_is_mailed_once_even_when_totals_are_redelivered(
    db: Database,
    linked: Settings,
    mail_server: MailServer,
    make_user: MakeUser,
    make_campaign: MakeCampaign,
    organiser: Principal,
) -> None:
    campaign = make_campaign(organiser, goal_cents=10_000)
    donor = make_user()
    paid(db, donor, campaign, 6_000)
    deliver(db, linked)
    assert [m.kind for m in all_mails(db)] == ["receipt"]  # not reached yet

    paid(db, donor, campaign, 5_000)  # 110.00 of 100.00
    deliver(db, linked)
    deliver_everything_again(db, linked)
    paid(db, donor, campaign, 1_000)  # above the goal again: no second mail
    deliver(db, linked)
    goal = [m for m in all_mails(db) if m.kind == "goal_reached"]
    assert len(goal) == 1 and goal[0].to_address == email_of(db, organiser)

    send_due(db, linked.smtp)  # type: ignore[arg-type]
    [message] = [
        m for m in mail_server.wait_for(4) if "reached its goal" in m["Subject"]
    ]
    text, html = parts(message)
    assert campaign.title in message["Subject"]
    assert "$100.00" in text and "$110.00" in text and ORG["org_name"] in text
    check_link(message, organiser, MailChoice.GOAL_REACHED)
    # Receipts carry no unsubscribe link.
    receipts = [m for m in mail_server.messages if "receipt" in m["Subject"].lower()]
    assert receipts and all(m["List-Unsubscribe"] is None for m in receipts)
    assert all("unsubscribe" not in parts(m)[0].lower() for m in receipts)


def test_no_goal_mail_for_an_organiser_who_turned_it_off(
    db: Database,
    linked: Settings,
    make_user: MakeUser,
    make_campaign: MakeCampaign,
    organiser: Principal,
) -> None:
    turn_off(db, organiser, MailChoice.GOAL_REACHED)
    campaign = make_campaign(organiser, goal_cents=1_000)
    paid(db, make_user(), campaign, 2_000)
    deliver(db, linked)
    assert [m.kind for m in all_mails(db)] == ["receipt"]
    # Turned on again: the goal was reached before, so a new gift tells nothing.
    update_mail_preferences(
        UnitOfWork(db), principal=organiser, changes={MailChoice.GOAL_REACHED: True}
    )
    paid(db, make_user(), campaign, 500)
    deliver(db, linked)
    assert [m.kind for m in all_mails(db)] == ["receipt", "receipt"]


def test_a_digest_lists_every_donation_of_the_hour_and_the_next_hour_another(
    db: Database,
    linked: Settings,
    mail_server: MailServer,
    make_user: MakeUser,
    campaign: Campaign,
    organiser: Principal,
) -> None:
    donor = make_user()
    amounts = [1_000, 2_550, 300_00]
    for amount in amounts[:2]:
        paid(db, donor, campaign, amount)
    paid(db, donor, campaign, amounts[2], donor_name=None)
    refunded = paid(db, donor, campaign, 777)
    deliver(db, linked)
    provider_says(db, refunded, "refunded")  # refunded before its digest
    deliver(db, linked)

    now = utcnow()
    assert write_due_digests(db, linked, now=now) == 0  # the hour is not over
    next_hour = now + timedelta(hours=1)
    assert write_due_digests(db, linked, now=next_hour) == 1
    assert write_due_digests(db, linked, now=next_hour) == 0  # nothing twice

    paid(db, donor, campaign, 4_200)
    deliver(db, linked)
    # The hour's digest went out: this one waits for the next hour's.
    assert write_due_digests(db, linked, now=next_hour) == 0
    assert write_due_digests(db, linked, now=now + timedelta(hours=2)) == 1

    digests = [m for m in all_mails(db) if m.kind == "digest"]
    assert len(digests) == 2
    assert {m.to_address for m in digests} == {email_of(db, organiser)}
    send_due(db, linked.smtp)  # type: ignore[arg-type]
    received = [m for m in mail_server.wait_for(7) if "new donation" in m["Subject"]]
    first, second = sorted(received, key=lambda m: "3 new" not in m["Subject"])
    assert first["Subject"] == f"3 new donations to {campaign.title}"
    text, html = parts(first)
    for shown in ("$10.00", "$25.50", "$300.00", "Dana", "Anonymous", "$335.50"):
        assert shown in text and shown in html
    assert "$7.77" not in text
    check_link(first, organiser, MailChoice.DONATION_DIGEST)
    assert second["Subject"] == f"1 new donation to {campaign.title}"
    assert "$42.00" in parts(second)[0] and "$10.00" not in parts(second)[0]


def test_no_digest_for_an_organiser_who_turned_it_off(
    db: Database,
    linked: Settings,
    make_user: MakeUser,
    campaign: Campaign,
    organiser: Principal,
) -> None:
    turn_off(db, organiser, MailChoice.DONATION_DIGEST)
    paid(db, make_user(), campaign, 1_000)
    deliver(db, linked)
    assert write_due_digests(db, linked, now=utcnow() + timedelta(hours=1)) == 0
    assert [m.kind for m in all_mails(db)] == ["receipt"]
    # The donations were let go: turning the digest on again starts afresh.
    update_mail_preferences(
        UnitOfWork(db),
        principal=organiser,
        changes={MailChoice.DONATION_DIGEST: True},
    )
    assert write_due_digests(db, linked, now=utcnow() + timedelta(hours=1)) == 0


@pytest.mark.postgres_only
def test_two_processes_writing_digests_at_once_write_one(
    db: Database,
    linked: Settings,
    make_user: MakeUser,
    make_campaign: MakeCampaign,
    organiser: Principal,
) -> None:
    campaigns = [make_campaign(organiser) for _ in range(3)]
    donor = make_user()
    for campaign in campaigns:
        for amount in (1_000, 2_000):
            paid(db, donor, campaign, amount)
    deliver(db, linked)
    later = utcnow() + timedelta(hours=1)
    counts: list[int] = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        counts.append(write_due_digests(db, linked, now=later))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 3
    digests = [m for m in all_mails(db) if m.kind == "digest"]
    assert len(digests) == 3 and all("2 new donations" in m.subject for m in digests)

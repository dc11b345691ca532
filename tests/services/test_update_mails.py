"""Campaign updates by mail, through the real outbox, the batched writer and a
real SMTP server: only donors who asked and whose donation was captured, one
mail per address however many pledges, an account's setting respected, a
guest's unsubscribe link that works without an account, and every mail
written once however often the event is delivered or the writer runs."""

from __future__ import annotations

from careforall.db import Database
from careforall.domain.rules import Principal
from careforall.models import Campaign
from careforall.services.campaign_updates import post_update
from careforall.services.mail_preferences import (
    MailChoice,
    read_link,
    unsubscribe,
    unsubscribe_key,
    update_mail_preferences,
)
from careforall.services.unit_of_work import UnitOfWork
from careforall.services.update_mails import write_due_update_mails
from careforall.settings import Settings
from tests.helpers.mails import all_mails, email_of, parts, send_due
from tests.helpers.outbox import deliver, deliver_everything_again
from tests.helpers.pledges import give, paid
from tests.helpers.smtp import MailServer
from tests.services.conftest import MakeAnon, MakeUser

SECRET = "update-mails-secret-" + "s" * 40
GUEST = "guest.donor@example.org"


def post(db: Database, organiser: Principal, campaign: Campaign, title: str) -> None:
    post_update(
        UnitOfWork(db),
        principal=organiser,
        campaign_id=campaign.id,
        title=title,
        body="The operation went well.\n\nThank you <all>.",
    )


def update_mails(db: Database) -> list[tuple[str, str]]:
    return sorted(
        (m.to_address, m.subject) for m in all_mails(db) if m.kind == "campaign_update"
    )


def test_updates_reach_each_address_that_asked_once(
    db: Database,
    mailing: Settings,
    mail_server: MailServer,
    make_user: MakeUser,
    make_anon: MakeAnon,
    campaign: Campaign,
    organiser: Principal,
) -> None:
    settings = mailing.with_(jwt_secret=SECRET, public_url="https://give.example")
    asked, declined, turned_off = make_user(), make_user(), make_user()
    guest, _token = make_anon()
    for _ in range(2):
        paid(db, asked, campaign, 1_000, campaign_updates=True)
    paid(db, declined, campaign, 1_000)
    paid(db, turned_off, campaign, 1_000, campaign_updates=True)
    update_mail_preferences(
        UnitOfWork(db),
        principal=turned_off,
        changes={MailChoice.CAMPAIGN_UPDATES: False},
    )
    paid(db, guest, campaign, 1_000, donor_email=GUEST, campaign_updates=True)
    # The same address as a guest: still one mail to it.
    paid(
        db,
        guest,
        campaign,
        1_000,
        donor_email=email_of(db, asked),
        campaign_updates=True,
    )
    # Asked, but the payment did not go through: no mail.
    give(
        db, guest, campaign, 500, donor_email="late@example.org", campaign_updates=True
    )
    deliver(db, settings)

    post(db, organiser, campaign, "Surgery done")
    deliver(db, settings)
    deliver_everything_again(db, settings)
    # Batches of one address: each its own transaction, all written.
    assert write_due_update_mails(db, settings, batch=1) == 2
    assert write_due_update_mails(db, settings, batch=1) == 0
    deliver_everything_again(db, settings)
    assert write_due_update_mails(db, settings) == 0
    subject = f"{campaign.title}: Surgery done"
    assert update_mails(db) == sorted(
        [(email_of(db, asked), subject), (GUEST, subject)]
    )

    send_due(db, settings.smtp)  # type: ignore[arg-type]
    sent = mail_server.wait_for(8)  # six receipts, two updates
    assert len(sent) == 8
    received = {m["To"]: m for m in sent if m["Subject"] == subject}
    assert set(received) == {email_of(db, asked), GUEST}
    message = received[GUEST]
    text, html = parts(message)
    assert "The operation went well." in text and "Thank you <all>." in text
    assert "Thank you &lt;all&gt;." in html
    link = message["List-Unsubscribe"][1:-1]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in text and f'href="{link}"' in html
    token = link.split("token=", 1)[1]
    found = read_link(unsubscribe_key(SECRET), token)
    assert (found.campaign_id, found.address) == (campaign.id, GUEST)

    # The guest's link works without an account, twice as well as once.
    for _ in range(2):
        unsubscribe(UnitOfWork(db), key=unsubscribe_key(SECRET), token=token)
    post(db, organiser, campaign, "Home again")
    deliver(db, settings)
    assert write_due_update_mails(db, settings) == 1
    assert [a for a, s in update_mails(db) if s.endswith("Home again")] == [
        email_of(db, asked)
    ]

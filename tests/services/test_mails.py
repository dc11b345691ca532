"""Mails through the real outbox and a real SMTP server (aiosmtpd): a capture
sends one receipt, whatever the redeliveries; an SMTP server that is down
delays it; an address refused for good parks it for an admin to replay;
without SMTP it is kept for the admins to read; STARTTLS when offered."""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from careforall.broadcaster import Broadcaster
from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import Forbidden
from careforall.domain.events import PledgeStatusChanged
from careforall.domain.rules import Principal
from careforall.mail_config import SmtpServer
from careforall.models import Campaign, Mail, OutboxEvent, User
from careforall.outbox.dispatcher import Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.outbox.mailer import MailSender
from careforall.payments.simulated import SimulatedProvider
from careforall.services import mail_queue
from careforall.services.mails import write_pledge_mails
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.pledges import give, provider_says
from tests.helpers.smtp import MailServer, free_port, mail_server, self_signed_tls
from tests.services.conftest import MakeUser

__all__ = ["mail_server"]  # the fixture, used by name

ORG = {
    "org_name": "Hope & Care Foundation",
    "org_address": "1 Harbour Road, Springfield",
    "org_tax_id": "EIN 12-3456789",
    "mail_from": "Hope & Care <receipts@hope.example>",
}


def deliver(db: Database, settings: Settings) -> None:
    """Run the outbox dispatcher until no event is due; every event succeeds."""
    dispatcher = Dispatcher(
        HandlerContext(
            db=db,
            settings=settings.with_(auto_capture=False),
            provider=SimulatedProvider(db),
        ),
        Broadcaster(),
    )
    while dispatcher.process_due().processed:
        pass
    with db.read() as session:
        failed = session.exec(
            select(OutboxEvent.last_error).where(OutboxEvent.status != "done")
        ).all()
    assert not failed, failed


def deliver_everything_again(db: Database, settings: Settings) -> None:
    with UnitOfWork(db) as uow:
        uow.session.execute(
            update(OutboxEvent).values(status="pending", available_at=utcnow())
        )
        uow.commit()
    deliver(db, settings)


def send_due(db: Database, server: SmtpServer, **kwargs: object) -> None:
    """One round of the mail sender, as its task runs it."""
    sender = MailSender(db, server, sender=ORG["mail_from"], **kwargs)  # type: ignore[arg-type]
    asyncio.run(sender.send_due())


def all_mails(db: Database) -> list[Mail]:
    with db.read() as session:
        return list(session.exec(select(Mail).order_by(col(Mail.id))).all())


def make_due(db: Database) -> None:
    """Skip the backoff: every queued mail is due now."""
    with UnitOfWork(db) as uow:
        uow.session.execute(update(Mail).values(next_attempt_at=utcnow()))
        uow.commit()


def email_of(db: Database, who: Principal) -> str:
    with db.read() as session:
        user = session.get(User, who.id)
    assert user is not None
    return user.email


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


@pytest.fixture
def mailing(settings: Settings, mail_server: MailServer) -> Settings:
    return settings.with_(smtp=mail_server.smtp, **ORG)


def test_a_capture_sends_exactly_one_receipt(
    db: Database,
    mailing: Settings,
    mail_server: MailServer,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    donor = make_user()
    pledge_id = give(db, donor, campaign, 2500)
    provider_says(db, pledge_id, "captured")
    deliver(db, mailing)
    deliver_everything_again(db, mailing)  # a redelivered capture writes nothing
    send_due(db, mailing.smtp)  # type: ignore[arg-type]
    send_due(db, mailing.smtp)  # type: ignore[arg-type]

    [message] = mail_server.wait_for(1)
    assert len(mail_server.wait_for(2, timeout=0.3)) == 1
    assert message["To"] == email_of(db, donor)
    assert message["From"] == ORG["mail_from"]
    assert "receipt" in message["Subject"].lower()
    assert message["Message-ID"] and message["Date"]
    text, html = parts(message)
    today = utcnow()
    for expected in (
        "$25.00",
        campaign.title,
        f"{today.day} {today:%B %Y}",
        pledge_id,
        "R-000001",
        ORG["org_name"],
        ORG["org_address"],
        ORG["org_tax_id"],
    ):
        assert expected in text
    assert "Hope &amp; Care Foundation" in html and "$25.00" in html
    [mail] = all_mails(db)
    assert (mail.status, mail.kind, mail.attempts) == ("sent", "receipt", 1)


def test_receipt_numbers_follow_each_other_and_notices_have_their_own_mails(
    db: Database, mailing: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    first, second, declined = (give(db, donor, campaign, n) for n in (100, 200, 300))
    provider_says(db, first, "captured")
    provider_says(db, declined, "failed", reason="Insufficient funds.")
    deliver(db, mailing)
    provider_says(db, second, "captured")
    provider_says(db, first, "refunded")
    deliver(db, mailing)
    deliver_everything_again(db, mailing)

    mails = {mail.cause_key: mail for mail in all_mails(db)}
    assert sorted(mails) == sorted(
        [
            f"receipt:{first}",
            f"receipt:{second}",
            f"declined:{declined}",
            f"refund:{first}",
        ]
    )
    numbers = [
        re.search(r"R-\d{6}", mails[f"receipt:{p}"].text).group()  # type: ignore[union-attr]
        for p in (first, second)
    ]
    assert numbers == ["R-000001", "R-000002"]
    assert "Insufficient funds." in mails[f"declined:{declined}"].text
    assert "refunded" in mails[f"refund:{first}"].subject
    assert "$1.00" in mails[f"refund:{first}"].text


def test_smtp_down_during_a_capture_then_up_the_receipt_arrives_once(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    server = MailServer(port=free_port())  # not started: nothing listens
    mailing = settings.with_(smtp=server.smtp, **ORG)
    donor = make_user()
    pledge_id = give(db, donor, campaign, 2500)
    provider_says(db, pledge_id, "captured")
    deliver(db, mailing)

    send_due(db, server.smtp, timeout=2.0)
    [mail] = all_mails(db)
    assert (mail.status, mail.attempts) == ("queued", 1)
    assert mail.last_error and mail.next_attempt_at > utcnow()
    send_due(db, server.smtp, timeout=2.0)  # not due yet: the backoff holds it
    assert all_mails(db)[0].attempts == 1

    server.start()
    try:
        make_due(db)
        send_due(db, server.smtp)
        send_due(db, server.smtp)
        assert len(server.wait_for(1)) == 1
        assert len(server.wait_for(2, timeout=0.3)) == 1
    finally:
        server.stop()
    [mail] = all_mails(db)
    assert (mail.status, mail.attempts, mail.last_error) == ("sent", 2, None)


def test_an_address_refused_for_good_is_a_dead_letter_an_admin_replays(
    db: Database,
    mailing: Settings,
    mail_server: MailServer,
    make_user: MakeUser,
    admin: Principal,
    campaign: Campaign,
) -> None:
    donor = make_user()
    mail_server.refused.add(email_of(db, donor))
    pledge_id = give(db, donor, campaign, 2500)
    provider_says(db, pledge_id, "captured")
    deliver(db, mailing)
    send_due(db, mailing.smtp)  # type: ignore[arg-type]

    [mail] = all_mails(db)
    assert (mail.status, mail.attempts) == ("dead", 1)
    assert "550" in (mail.last_error or "")
    assert mail_server.messages == []
    with db.read() as session:
        page = mail_queue.mails(
            session, principal=admin, first=10, after=None, status="dead"
        )
        with pytest.raises(Forbidden):
            mail_queue.mails(session, principal=donor, first=10, after=None)
    assert [m.id for m in page.items] == [mail.id]

    mail_server.refused.clear()  # the mailbox exists now
    assert mail_id(mail) and replay(db, admin, mail) == 1
    assert replay(db, admin, mail) == 0  # queued already
    send_due(db, mailing.smtp)  # type: ignore[arg-type]
    send_due(db, mailing.smtp)  # type: ignore[arg-type]
    assert len(mail_server.wait_for(1)) == 1
    assert len(mail_server.wait_for(2, timeout=0.3)) == 1
    assert all_mails(db)[0].status == "sent"
    assert replay(db, admin, mail) == 0  # sent: nothing to replay


def mail_id(mail: Mail) -> str:
    return str(mail.id)


def replay(db: Database, admin: Principal, mail: Mail) -> int:
    return mail_queue.replay_mail(
        UnitOfWork(db), principal=admin, mail_id=mail_id(mail)
    )


def test_without_smtp_the_mail_is_kept_and_an_admin_reads_it(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    admin: Principal,
    campaign: Campaign,
) -> None:
    assert settings.smtp is None
    donor = make_user()
    first = give(db, donor, campaign, 2500)
    second = give(db, donor, campaign, 700)
    provider_says(db, first, "captured")
    deliver(db, settings)
    provider_says(db, second, "captured")
    deliver(db, settings)

    with db.read() as session:
        page = mail_queue.mails(session, principal=admin, first=1, after=None)
        assert page.has_next_page
        rest = mail_queue.mails(
            session, principal=admin, first=10, after=page.end_cursor
        )
    newest, oldest = page.items[0], rest.items[0]
    assert (newest.status, oldest.status) == ("kept", "kept")
    assert second in newest.text and "$7.00" in newest.text
    assert first in oldest.text and "R-000001" in oldest.text
    assert newest.to_address == email_of(db, donor)


def test_starttls_when_the_server_offers_it(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
    tmp_path: Path,
) -> None:
    server_tls, client_tls = self_signed_tls(tmp_path)
    server = MailServer(port=free_port(), tls_context=server_tls)
    server.start()
    try:
        mailing = settings.with_(smtp=server.smtp, **ORG)
        donor = make_user()
        pledge_id = give(db, donor, campaign, 2500)
        provider_says(db, pledge_id, "captured")
        deliver(db, mailing)
        send_due(db, server.smtp, tls_context=client_tls)
        assert len(server.wait_for(1)) == 1
        assert server.received[0].over_tls
        assert all_mails(db)[0].status == "sent"
    finally:
        server.stop()


def test_starttls_off_is_not_tried(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
    tmp_path: Path,
) -> None:
    """`?starttls=off`: the client never upgrades, so a server that insists on
    STARTTLS refuses the mail (530) and it waits as a dead letter."""
    server_tls, _client_tls = self_signed_tls(tmp_path)
    server = MailServer(port=free_port(), tls_context=server_tls)
    server.start()
    try:
        plain = SmtpServer(host="127.0.0.1", port=server.port, starttls=False)
        mailing = settings.with_(smtp=plain, **ORG)
        donor = make_user()
        provider_says(db, give(db, donor, campaign, 2500), "captured")
        deliver(db, mailing)
        send_due(db, plain)
        assert server.messages == []
        [mail] = all_mails(db)
        assert mail.status == "dead" and "530" in (mail.last_error or "")
    finally:
        server.stop()


def test_a_mail_due_later_is_not_sent_now(
    db: Database,
    mailing: Settings,
    mail_server: MailServer,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    donor = make_user()
    provider_says(db, give(db, donor, campaign, 2500), "captured")
    deliver(db, mailing)
    with UnitOfWork(db) as uow:
        uow.session.execute(
            update(Mail).values(next_attempt_at=utcnow() + timedelta(hours=1))
        )
        uow.commit()
    send_due(db, mailing.smtp)  # type: ignore[arg-type]
    assert mail_server.messages == [] and all_mails(db)[0].status == "queued"


# --- receipt numbers without gaps ---------------------------------------------


def captured(pledge_id: str, campaign: Campaign) -> PledgeStatusChanged:
    return PledgeStatusChanged(
        pledge_id=pledge_id,
        campaign_id=campaign.id,
        amount_cents=100,
        currency=campaign.currency,
        from_status="AUTHORIZED",
        to_status="CAPTURED",
        source="test",
    )


def receipt_numbers(db: Database) -> dict[str, str]:
    numbers = {}
    for mail in all_mails(db):
        found = re.search(r"R-\d{6}", mail.text)
        assert found is not None
        numbers[mail.cause_key.removeprefix("receipt:")] = found.group()
    return numbers


def test_a_rolled_back_receipt_leaves_no_gap(
    db: Database, mailing: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    first, second = (give(db, donor, campaign, 100) for _ in range(2))
    with db.write_connection() as conn, conn.begin() as transaction:
        assert write_pledge_mails(conn, [captured(first, campaign)], mailing) == 1
        transaction.rollback()  # the batch failed: its mail and number go
    with db.write_connection() as conn, conn.begin():
        events = [captured(second, campaign), captured(first, campaign)]
        assert write_pledge_mails(conn, events, mailing) == 2
        assert write_pledge_mails(conn, events, mailing) == 0  # written already
    assert receipt_numbers(db) == {second: "R-000001", first: "R-000002"}


@pytest.mark.postgres_only
def test_two_processes_number_receipts_without_gaps_or_twins(
    db: Database, mailing: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    """Writers on separate connections at once (as two server processes are):
    the second waits on the counter row until the first commits or rolls
    back, then numbers after what committed."""
    donor = make_user()
    pledges = [give(db, donor, campaign, 100) for _ in range(3)]
    first_has_raised = threading.Event()
    first_may_end = threading.Event()

    def slow_writer(pledge_id: str, commit: bool) -> None:
        with db.write_connection() as conn, conn.begin() as transaction:
            assert write_pledge_mails(conn, [captured(pledge_id, campaign)], mailing)
            first_has_raised.set()
            first_may_end.wait(10)
            if not commit:
                transaction.rollback()

    def writer(pledge_id: str) -> None:
        with db.write_connection() as conn, conn.begin():
            write_pledge_mails(conn, [captured(pledge_id, campaign)], mailing)

    rounds = ((False, pledges[0], pledges[1]), (True, pledges[2], pledges[0]))
    for commit, held, waiting in rounds:
        first_has_raised.clear()
        first_may_end.clear()
        slow = threading.Thread(target=slow_writer, args=(held, commit))
        slow.start()
        assert first_has_raised.wait(10)
        other = threading.Thread(target=writer, args=(waiting,))
        other.start()
        other.join(0.5)
        assert other.is_alive()  # held on the counter row
        first_may_end.set()
        slow.join(10)
        other.join(10)
    # Round one: pledge 0's receipt rolled back, so pledge 1's is number 1.
    # Round two: pledge 2's committed first (2), pledge 0's waited (3).
    assert receipt_numbers(db) == {
        pledges[1]: "R-000001",
        pledges[2]: "R-000002",
        pledges[0]: "R-000003",
    }

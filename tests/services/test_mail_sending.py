"""Mails sent to a real SMTP server (aiosmtpd): a server that is down delays
a receipt, which then arrives once; an address refused for good parks the
mail as dead for an admin to replay; STARTTLS when the server offers it, and
never with `?starttls=off`."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import update

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import Forbidden
from careforall.domain.rules import Principal
from careforall.mail import smtp
from careforall.mail_config import SmtpServer
from careforall.models import Campaign, Mail
from careforall.outbox import mailer
from careforall.services import mail_queue
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.mails import ORG, all_mails, email_of, make_due, send_due
from tests.helpers.outbox import deliver
from tests.helpers.pledges import give, paid, provider_says
from tests.helpers.smtp import MailServer, free_port, self_signed_tls
from tests.services.conftest import MakeUser


def test_smtp_down_during_a_capture_then_up_the_receipt_arrives_once(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    server = MailServer(port=free_port())  # not started: nothing listens
    mailing = settings.with_(smtp=server.smtp, **ORG)
    donor = make_user()
    paid(db, donor, campaign, 2500)
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
    paid(db, donor, campaign, 2500)
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
        paid(db, donor, campaign, 2500)
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
        paid(db, donor, campaign, 2500)
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
    paid(db, donor, campaign, 2500)
    deliver(db, mailing)
    with UnitOfWork(db) as uow:
        uow.session.execute(
            update(Mail).values(next_attempt_at=utcnow() + timedelta(hours=1))
        )
        uow.commit()
    send_due(db, mailing.smtp)  # type: ignore[arg-type]
    assert mail_server.messages == [] and all_mails(db)[0].status == "queued"


def a_message(*, to: str) -> EmailMessage:
    return smtp.build_message(
        sender="CareForAll <no-reply@localhost>",
        to=to,
        subject="s",
        text="t",
        html="<p>t</p>",
        mail_id=1,
    )


def test_the_envelope_names_only_the_mails_address(mail_server: MailServer) -> None:
    """The recipients come from the mail's row, never from what the To:
    header could be read as."""
    message = a_message(to="a:victim@example.com, other@example.com;")
    asyncio.run(smtp.send(mail_server.smtp, message, recipient="donor@example.org"))
    [received] = mail_server.received
    assert received.rcpt_tos == ["donor@example.org"]


def test_a_password_is_never_sent_without_starttls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a login, STARTTLS is required (someone on the path could strip the
    server's offer and read the password); without one it is taken when
    offered; `?starttls=off` never asks."""
    asked: list[object] = []

    async def fake_send(message: object, **options: object) -> None:
        asked.append(options["start_tls"])

    monkeypatch.setattr(smtp.aiosmtplib, "send", fake_send)
    message = a_message(to="donor@example.org")
    for server in (
        SmtpServer(host="h", port=25, username="u", password="p"),
        SmtpServer(host="h", port=25),
        SmtpServer(host="h", port=25, starttls=False),
    ):
        asyncio.run(smtp.send(server, message, recipient="donor@example.org"))
    assert asked == [True, None, False]


def test_a_send_that_outlasts_its_limit_is_tried_again_later(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that answers each step just within its timeout must not hold a
    mail past the sender's lease: the whole send is bounded, then retried."""
    server = SmtpServer(host="127.0.0.1", port=free_port())

    async def slow_send(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(5)

    monkeypatch.setattr(mailer, "SEND_LIMIT_SECONDS", 0.05)
    monkeypatch.setattr(smtp, "send", slow_send)
    mailing = settings.with_(smtp=server, **ORG)
    provider_says(db, give(db, make_user(), campaign, 2500), "captured")
    deliver(db, mailing)
    send_due(db, server)
    [mail] = all_mails(db)
    assert (mail.status, mail.attempts) == ("queued", 1)
    assert mail.last_error is not None and "Timeout" in mail.last_error

"""Helpers of the mail tests: the organisation they configure, one round of
the mail sender, and the mails kept (the outbox that writes them is run by
tests/helpers/outbox.py `deliver`)."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.rules import Principal
from careforall.mail_config import SmtpServer
from careforall.models import Mail, User
from careforall.outbox.mailer import MailSender
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.smtp import MailServer

ORG = {
    "org_name": "Hope & Care Foundation",
    "org_address": "1 Harbour Road, Springfield",
    "org_tax_id": "EIN 12-3456789",
    "mail_from": "Hope & Care <receipts@hope.example>",
}


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

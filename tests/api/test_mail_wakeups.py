"""The mail sender does not wait for its slow look: mails kept while no SMTP
server was configured go out by themselves once the app starts with one, and
a receipt queued by the outbox, or a mail an admin replays, wakes the sender
at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from careforall.app import create_app
from careforall.db import Database
from careforall.services import alerts, mail_queue
from careforall.services.bootstrap import ensure_admin
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests import factories as f
from tests.helpers.admin_mails import (
    REPLAY,
    give_and_pay,
    receipt_statuses,
    receipts,
    receipts_received,
)
from tests.helpers.api import ADMIN_EMAIL, ADMIN_PASSWORD, GQL
from tests.helpers.mails import parts
from tests.helpers.smtp import MailServer
from tests.helpers.waiting import wait_until


@pytest.fixture
def slow_look(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sender's fallback look, far beyond any wait here: only a wake-up
    can send a mail in time."""
    monkeypatch.setattr(mail_queue, "IDLE_WAIT_SECONDS", 600.0)


def test_kept_mails_are_sent_once_the_app_starts_with_smtp(
    settings: Settings, mail_server: MailServer, slow_look: None
) -> None:
    with TestClient(create_app(settings)) as client:  # no SMTP: kept
        gql = GQL(client)
        admin = f.admin(gql)
        donor, pledge_id = give_and_pay(gql)
        wait_until(lambda: receipt_statuses(gql, admin.token) == ["KEPT"])
    assert mail_server.messages == []

    with TestClient(create_app(settings.with_(smtp=mail_server.smtp))) as client:
        gql = GQL(client)
        [message] = receipts_received(mail_server, donor.email)
        assert pledge_id in parts(message)[0]
        admin = f.admin(gql)
        wait_until(lambda: receipt_statuses(gql, admin.token) == ["SENT"])
    assert len(receipts_received(mail_server, donor.email)) == 1


def test_a_receipt_queued_by_the_outbox_wakes_the_sender(
    app_factory: Callable[..., TestClient], mail_server: MailServer, slow_look: None
) -> None:
    gql = GQL(app_factory(smtp=mail_server.smtp))
    donor, _pledge_id = give_and_pay(gql)
    assert len(receipts_received(mail_server, donor.email)) == 1


def test_a_replayed_mail_wakes_the_sender(
    app_factory: Callable[..., TestClient], mail_server: MailServer, slow_look: None
) -> None:
    gql = GQL(app_factory(smtp=mail_server.smtp))
    admin = f.admin(gql)
    organiser, donor = f.register(gql), f.register(gql)
    mail_server.refused.add(donor.email)  # refused for good: a dead mail
    campaign = f.campaign(gql, organiser.token)
    pledge = f.pledge(gql, donor.token, campaign["id"])
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    wait_until(lambda: receipt_statuses(gql, admin.token) == ["DEAD"])

    mail_server.refused.clear()  # the mailbox exists now
    [mail] = receipts(gql, admin.token)
    assert gql.ok(REPLAY, {"id": mail["id"]}, admin.token)["replayMail"] == 1
    assert len(receipts_received(mail_server, donor.email)) == 1


def test_the_app_mails_an_alert_that_fired_while_it_was_down(
    app_factory: Callable[..., TestClient], db: Database, mail_server: MailServer
) -> None:
    """The periodic mails run in the app's lifespan: a dead-letter alert of
    the last hour reaches the admin's mailbox once the app runs."""
    ensure_admin(UnitOfWork(db), email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    with db.write_session() as session:
        alerts.notify_dead_letter(
            session, event_id=9, name="PledgeStatusChanged", attempts=8, error="boom"
        )
        session.commit()

    app_factory(smtp=mail_server.smtp)
    [message] = mail_server.wait_for(1)
    assert message["To"] == ADMIN_EMAIL
    assert "dead letter" in message["Subject"] and "#9" in parts(message)[0]

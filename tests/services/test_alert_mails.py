"""The admins' alerts by mail: a dead letter's alert reaches every admin's
mailbox (a real SMTP server), at most once an hour per kind of alert, and an
alert that fired while the last mail was recent goes out the next hour."""

from __future__ import annotations

from datetime import datetime, timedelta

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.rules import Principal
from careforall.models import AlertThrottle, User
from careforall.services import alerts
from careforall.services.alert_mails import write_alert_mails
from careforall.settings import Settings
from tests.helpers.mails import all_mails, email_of, parts, send_due
from tests.helpers.smtp import MailServer
from tests.services.conftest import MakeUser


def dead_letter(db: Database, event_id: int, *, at: datetime | None = None) -> None:
    """An outbox event parked, as the dispatcher tells the admins of it; `at`
    is when the alert fired (its own 5-minute window is over by then)."""
    with db.write_session() as session:
        row = session.get(AlertThrottle, "dead_letter")
        if row is not None and at is not None:
            row.last_sent_at = at - timedelta(days=1)
            session.add(row)
            session.flush()
        alerts.notify_dead_letter(
            session,
            event_id=event_id,
            name="PledgeStatusChanged",
            attempts=8,
            error="provider away",
        )
        row = session.get(AlertThrottle, "dead_letter")
        assert row is not None
        if at is not None:
            row.last_sent_at = at
            session.add(row)
        session.commit()


def test_a_dead_letter_alert_mails_every_admin_once_an_hour_at_most(
    db: Database,
    mailing: Settings,
    mail_server: MailServer,
    admin: Principal,
    make_user: MakeUser,
) -> None:
    other_admin = make_user()
    with db.write_session() as session:
        user = session.get(User, other_admin.id)
        assert user is not None
        user.role = "ADMIN"
        session.add(user)
        session.commit()
    now = utcnow()
    assert write_alert_mails(db, mailing, now=now) == 0  # nothing fired yet

    dead_letter(db, 41)
    assert write_alert_mails(db, mailing, now=now) == 2
    assert write_alert_mails(db, mailing, now=now) == 0
    send_due(db, mailing.smtp)  # type: ignore[arg-type]
    messages = mail_server.wait_for(2)
    assert {m["To"] for m in messages} == {
        email_of(db, admin),
        email_of(db, other_admin),
    }
    text, _html = parts(messages[0])
    assert "dead letter" in messages[0]["Subject"]
    assert "#41" in text and "provider away" in text
    assert messages[0]["List-Unsubscribe"] is None

    # Fired again 20 minutes later: the last mail is recent, so it waits...
    dead_letter(db, 42, at=now + timedelta(minutes=20))
    assert write_alert_mails(db, mailing, now=now + timedelta(minutes=30)) == 0
    # ...and goes out once the hour has passed, with the newest alert's words.
    assert write_alert_mails(db, mailing, now=now + timedelta(minutes=61)) == 2
    assert write_alert_mails(db, mailing, now=now + timedelta(minutes=62)) == 0
    alert_mails = [m for m in all_mails(db) if m.kind == "alert"]
    assert len(alert_mails) == 4
    assert "#42" in alert_mails[-1].text


def test_an_alert_from_before_mail_was_watched_is_not_mailed(
    db: Database, mailing: Settings, admin: Principal
) -> None:
    dead_letter(db, 7, at=utcnow() - timedelta(hours=3))
    assert write_alert_mails(db, mailing) == 0
    assert all_mails(db) == []

"""The admins' alerts by mail: each alert of `services/alerts.py` (a dead
letter, payment webhooks being refused) is also mailed to every admin, at
most once an hour per kind of alert.

The alerts themselves are written as notifications where they happen (in the
transaction that parks the event or logs the refusal), each kind throttled by
its `alert_throttle` row, whose `last_sent_at` says when it last fired. The
periodic mail task (`outbox/mail_rounds.py`) compares that with a row of its
own per kind (`mail:<kind>`): an alert newer than the last mail, when that
mail is an hour old, is mailed now (its newest notification's words), and the
row moves on. The row is read locked, so two processes mail an alert once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.notifications import NotificationKind
from careforall.domain.states import Role
from careforall.mail.templates import render
from careforall.models import AlertThrottle, Mail, Notification, User, table_of
from careforall.services.mails import count_written, mail_row, organisation
from careforall.settings import Settings

ALERT_MAIL_EVERY = timedelta(hours=1)
MAIL_PREFIX = "mail:"

_MAILS = table_of(Mail)


def notification_kind(alert_key: str) -> NotificationKind:
    """The notification an alert's throttle key writes."""
    if alert_key.startswith("webhooks:"):
        return NotificationKind.WEBHOOKS_REJECTED
    return NotificationKind.DEAD_LETTER


def write_alert_mails(
    db: Database, settings: Settings, *, now: datetime | None = None
) -> int:
    """Mail the alerts fired since their kind was last mailed, to every admin;
    one short transaction per kind. Returns how many mails were written."""
    now = now or utcnow()
    with db.read() as session:
        keys = session.exec(
            select(AlertThrottle.key).where(
                col(AlertThrottle.key).not_like(f"{MAIL_PREFIX}%")
            )
        ).all()
    written = sum(_mail_alert(db, settings, key, now) for key in keys)
    if written:
        db.mail_queued()
    return written


def _mail_alert(db: Database, settings: Settings, key: str, now: datetime) -> int:
    with db.write_session() as session:
        alert = session.get(AlertThrottle, key)
        mailed = session.get(AlertThrottle, MAIL_PREFIX + key, with_for_update=True)
        if alert is None or not _due(alert, mailed, now):
            return 0
        rows = _mails(session, settings, key, alert.last_sent_at, now)
        if mailed is None:
            mailed = AlertThrottle(key=MAIL_PREFIX + key, last_sent_at=now)
        mailed.last_sent_at = now
        session.add(mailed)
        if rows:
            session.execute(insert(_MAILS), rows)
        try:
            session.commit()
        except IntegrityError:  # another process mailed it first
            session.rollback()
            return 0
        count_written(rows)
        return len(rows)


def _due(alert: AlertThrottle, mailed: AlertThrottle | None, now: datetime) -> bool:
    if mailed is None:
        # Never mailed: only an alert of the last hour (not one from before
        # mail was set up).
        return alert.last_sent_at > now - ALERT_MAIL_EVERY
    return (
        alert.last_sent_at > mailed.last_sent_at
        and mailed.last_sent_at <= now - ALERT_MAIL_EVERY
    )


def _mails(
    session: Session, settings: Settings, key: str, fired: datetime, now: datetime
) -> list[dict[str, object]]:
    """One mail per admin, with the words of the alert's newest notification."""
    admins = session.exec(
        select(User.id, User.email)
        .where(User.role == Role.ADMIN.value)
        .order_by(col(User.id))
    ).all()
    if not admins:
        return []
    kind = notification_kind(key)
    newest = session.exec(
        select(Notification.title, Notification.body)
        .where(
            Notification.recipient_user_id == admins[0][0],
            Notification.kind == kind.value,
        )
        .order_by(col(Notification.id).desc())
        .limit(1)
    ).first()
    title, body = newest if newest is not None else (kind.value, "")
    mail = render("alert", organisation(settings), title=title, body=body)
    return [
        mail_row(
            "alert",
            f"alert:{key}:{fired:%Y-%m-%dT%H:%M:%S.%f}:{user_id}",
            email,
            mail,
            settings,
            now,
        )
        for user_id, email in admins
    ]

"""Admin alerts: a dead letter, and payment webhooks being refused.

Each alert is rate-limited through one `alert_throttle` row per kind, claimed
in the transaction that sends it, so a flood (a thousand forged webhooks, a
hundred events parked at once) gives one notification per admin, not one per
occurrence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from careforall.domain import notifications as words
from careforall.domain.clock import utcnow
from careforall.domain.money import format_money
from careforall.domain.notifications import NotificationKind
from careforall.domain.states import Role
from careforall.models import AlertThrottle, User, WebhookLog
from careforall.services.notifications import add_all, notification

# At most one dead-letter alert per this long; the next one says how many
# more were parked meanwhile.
DEAD_LETTER_ALERT_EVERY = timedelta(minutes=5)
# This many refusals of one kind within the window make an alert, sent at
# most once per `WEBHOOK_ALERT_EVERY` for that kind.
WEBHOOK_REJECTIONS = 10
WEBHOOK_WINDOW = timedelta(minutes=5)
WEBHOOK_ALERT_EVERY = timedelta(minutes=30)


def take_alert(
    session: Session, *, key: str, every: timedelta, now: datetime | None = None
) -> int | None:
    """Claim the right to send the alert `key` now, in the caller's transaction.

    None while the last one is younger than `every` (this one is counted as
    suppressed); otherwise how many were suppressed since the last one. The
    row is locked (PostgreSQL), so two processes never both send.
    """
    now = now or utcnow()
    row = session.get(AlertThrottle, key, with_for_update=True)
    if row is None:
        session.add(AlertThrottle(key=key, last_sent_at=now))
        return 0
    if row.last_sent_at > now - every:
        row.suppressed += 1
        session.add(row)
        return None
    suppressed = row.suppressed
    row.last_sent_at, row.suppressed = now, 0
    session.add(row)
    return suppressed


def _admin_ids(session: Session) -> Sequence[str]:
    return session.exec(
        select(User.id).where(User.role == Role.ADMIN.value).order_by(col(User.id))
    ).all()


def notify_dead_letter(
    session: Session, *, event_id: int, name: str, attempts: int, error: str
) -> int:
    """Tell every admin that an outbox event was parked, at most once per
    `DEAD_LETTER_ALERT_EVERY`; for the dispatcher, in the transaction that
    parks the event (so it needs no dedupe key). Returns how many were written.
    """
    suppressed = take_alert(session, key="dead_letter", every=DEAD_LETTER_ALERT_EVERY)
    if suppressed is None:
        return 0
    message = words.dead_letter(
        event_id=event_id,
        name=name,
        attempts=attempts,
        error=error,
        suppressed=suppressed,
    )
    return _tell_admins(session, NotificationKind.DEAD_LETTER, message)


def _tell_admins(
    session: Session,
    kind: NotificationKind,
    message: words.Message,
    pledge_id: str | None = None,
) -> int:
    """One notification to every admin, in the caller's transaction (never
    deduplicated: the callers decide how often); returns how many."""
    admins = _admin_ids(session)
    add_all(
        session.connection(),
        [
            notification(
                kind, message, dedupe_key=None, user_id=admin, pledge_id=pledge_id
            )
            for admin in admins
        ],
    )
    return len(admins)


# A payment event whose amount or currency is not its pledge's: at most one
# alert this often (each event is in the webhook log).
MISMATCH_ALERT_EVERY = timedelta(minutes=5)


def notify_payment_mismatch(
    session: Session, *, provider: str, event_id: str, pledge_id: str, detail: str
) -> int:
    """Tell every admin that a provider's event did not match its pledge and
    was not applied, in the caller's transaction; rate-limited. Returns how
    many notifications were written."""
    suppressed = take_alert(session, key="payment_mismatch", every=MISMATCH_ALERT_EVERY)
    if suppressed is None:
        return 0
    message = words.payment_mismatch(
        provider=provider,
        event_id=event_id,
        pledge_id=pledge_id,
        detail=detail,
        suppressed=suppressed,
    )
    return _tell_admins(session, NotificationKind.WEBHOOKS_REJECTED, message, pledge_id)


def notify_dispute(
    session: Session,
    *,
    pledge_id: str,
    amount_cents: int,
    currency: str,
    status: str,
    closed: bool,
) -> int:
    """Tell every admin that a payment was disputed, or that its dispute
    closed, in the transaction that records it (once per provider event, so
    not rate-limited: disputes are rare and each has a deadline)."""
    message = words.dispute(
        pledge_id=pledge_id,
        amount=format_money(amount_cents, currency),
        status=status,
        closed=closed,
    )
    return _tell_admins(session, NotificationKind.PAYMENT_DISPUTED, message, pledge_id)


def _logged_burst(session: Session, outcome: str, now: datetime) -> int:
    """How many of the newest `WEBHOOK_REJECTIONS` logged refusals of this
    kind came within the window (all of them, or 0)."""
    # The newest N through the (outcome, id) index: never a scan of the window.
    times = session.exec(
        select(WebhookLog.received_at)
        .where(WebhookLog.outcome == outcome)
        .order_by(col(WebhookLog.id).desc())
        .limit(WEBHOOK_REJECTIONS)
    ).all()
    if len(times) < WEBHOOK_REJECTIONS or min(times) < now - WEBHOOK_WINDOW:
        return 0
    return len(times)


def watch_webhook_rejections(
    session: Session,
    *,
    outcome: str,
    now: datetime | None = None,
    recent: int | None = None,
) -> int:
    """In the transaction that logs a refused webhook: when the newest
    `WEBHOOK_REJECTIONS` refusals of this kind all came within `WEBHOOK_WINDOW`
    and no alert for it went out in the last `WEBHOOK_ALERT_EVERY`, tell every
    admin. Returns how many notifications were written.

    Written here rather than by an outbox handler: a refused webhook changes
    nothing else, not even the outbox. Cheap in a flood: while an alert is
    recent, one primary-key read.

    `recent`: refusals of this kind within the window as counted in memory,
    for the kinds that are sampled rather than logged one row each (see
    `webhook_log.RefusalSampler`); the rows are not read then.
    """
    now = now or utcnow()
    key = f"webhooks:{outcome}"
    sent = session.exec(
        select(AlertThrottle.last_sent_at).where(AlertThrottle.key == key)
    ).first()
    if sent is not None and sent > now - WEBHOOK_ALERT_EVERY:
        return 0
    count = recent if recent is not None else _logged_burst(session, outcome, now)
    if count < WEBHOOK_REJECTIONS:
        return 0
    if take_alert(session, key=key, every=WEBHOOK_ALERT_EVERY, now=now) is None:
        return 0
    message = words.webhooks_rejected(
        outcome=outcome,
        count=count,
        window_minutes=int(WEBHOOK_WINDOW.total_seconds() // 60),
        every_minutes=int(WEBHOOK_ALERT_EVERY.total_seconds() // 60),
    )
    admins = _admin_ids(session)
    add_all(
        session.connection(),
        [
            # No dedupe key: written once, with the throttle's claim.
            notification(
                NotificationKind.WEBHOOKS_REJECTED,
                message,
                dedupe_key=None,
                user_id=admin,
            )
            for admin in admins
        ],
    )
    return len(admins)

"""What a donor hears when their recurring gift stops without their asking:
a notification and a mail, once per stop.

Runs inside the outbox dispatcher's transaction (`outbox/handlers.py`): the
notification's `dedupe_key` and the mail's `cause_key` name the stop (plan
and time), so a redelivered event writes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam
from sqlalchemy import select as core_select

from careforall.domain import notifications as words
from careforall.domain.clock import utcnow
from careforall.domain.events import RecurringDonationStopped
from careforall.domain.money import display_money
from careforall.domain.notifications import NotificationKind
from careforall.domain.recurring import RecurringStatus
from careforall.mail.templates import render
from careforall.models import Campaign, Mail, RecurringDonation, User, table_of
from careforall.services.mails import add_mails, mail_row, organisation
from careforall.services.notifications import add_all, notification
from careforall.settings import Settings

MAIL_KIND = "recurring_stopped"
_PLANS = table_of(RecurringDonation)
_CAMPAIGNS = table_of(Campaign)
_USERS = table_of(User)
_MAILS = table_of(Mail)
_ABOUT = (
    core_select(
        _PLANS.c.id,
        _PLANS.c.amount_cents,
        _PLANS.c.currency,
        _PLANS.c.failure_reason,
        _CAMPAIGNS.c.title,
        _USERS.c.email,
        _USERS.c.erased_at,
    )
    .select_from(
        _PLANS.join(_CAMPAIGNS, _CAMPAIGNS.c.id == _PLANS.c.campaign_id).join(
            _USERS, _USERS.c.id == _PLANS.c.donor_user_id
        )
    )
    .where(_PLANS.c.id.in_(bindparam("ids", expanding=True)))
)
_WRITTEN = core_select(_MAILS.c.cause_key).where(
    _MAILS.c.cause_key.in_(bindparam("keys", expanding=True))
)


def tell_donors(
    conn: Connection, events: Sequence[RecurringDonationStopped], settings: Settings
) -> None:
    """A notification and a mail for each plan that stopped."""
    if not events:
        return
    about = {
        row.id: row
        for row in conn.execute(_ABOUT, {"ids": [e.plan_id for e in events]})
    }
    keys = {f"{MAIL_KIND}:{e.plan_id}:{e.at}": e for e in events}
    written = set(conn.execute(_WRITTEN, {"keys": list(keys)}).scalars())
    notes, mails, now = [], [], utcnow()
    for key, event in keys.items():
        found = about.get(event.plan_id)
        if found is None or event.reason == "account_deleted":
            continue  # nobody left to tell
        paused = event.status == RecurringStatus.PAUSED
        kind = (
            NotificationKind.RECURRING_PAUSED
            if paused
            else NotificationKind.RECURRING_ENDED
        )
        amount = display_money(found.amount_cents, found.currency)
        message = words.recurring_stopped(
            kind, amount=amount, campaign_title=found.title
        )
        notes.append(
            notification(
                kind,
                message,
                dedupe_key=f"{kind.value}:{event.plan_id}:{event.at}",
                user_id=event.donor_user_id,
                campaign_id=event.campaign_id,
            )
        )
        if key in written or found.erased_at is not None:
            continue
        mail = render(
            MAIL_KIND,
            organisation(settings),
            paused=paused,
            amount=amount,
            campaign_title=found.title,
            reason=found.failure_reason,
            plan_id=found.id,
        )
        mails.append(mail_row(MAIL_KIND, key, found.email, mail, settings, now))
    add_all(conn, notes)
    if mails:
        add_mails(conn, mails)

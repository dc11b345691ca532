"""The organiser's mail about an admin's decision on their campaign: approved,
rejected or suspended, with the admin's note.

A transactional mail (like a security mail, it tells the organiser what
happened to their campaign and what to do), so it has no unsubscribe link and
no preference turns it off. Written by the outbox handler of
`CampaignReviewed`, in the dispatcher's transaction; its cause key names the
campaign and the decision's time, so a redelivered event writes nothing more
while a campaign suspended twice (lifted between) is told twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam
from sqlalchemy import select as core_select

from careforall.domain.clock import utcnow
from careforall.domain.events import CampaignReviewed
from careforall.domain.notifications import REVIEW_KINDS
from careforall.domain.states import CampaignStatus
from careforall.mail.templates import render
from careforall.models import Campaign, Mail, User, table_of
from careforall.services.mails import add_mails, mail_row, organisation
from careforall.settings import Settings

KIND = "campaign_reviewed"

_MAILS = table_of(Mail)
_CAMPAIGNS = table_of(Campaign)
_USERS = table_of(User)

# Each campaign with its organiser's address (none once the account is erased).
_ORGANISERS = (
    core_select(_CAMPAIGNS.c.id, _CAMPAIGNS.c.title, _USERS.c.email)
    .select_from(_CAMPAIGNS.join(_USERS, _USERS.c.id == _CAMPAIGNS.c.owner_id))
    .where(
        _CAMPAIGNS.c.id.in_(bindparam("ids", expanding=True)),
        _USERS.c.erased_at.is_(None),
    )
)
_WRITTEN = core_select(_MAILS.c.cause_key).where(
    _MAILS.c.cause_key.in_(bindparam("keys", expanding=True))
)


def review_key(event: CampaignReviewed) -> str:
    return f"{KIND}:{event.campaign_id}:{event.decided_at}"


def write_review_mails(
    conn: Connection, events: Sequence[CampaignReviewed], settings: Settings
) -> int:
    """One mail per decision to the campaign's organiser, unless written
    before; returns how many were written."""
    told = {
        review_key(e): e for e in events if CampaignStatus(e.outcome) in REVIEW_KINDS
    }
    if not told:
        return 0
    written = set(conn.execute(_WRITTEN, {"keys": list(told)}).scalars())
    waiting = {key: e for key, e in told.items() if key not in written}
    if not waiting:
        return 0
    ids = sorted({e.campaign_id for e in waiting.values()})
    found = {row.id: row for row in conn.execute(_ORGANISERS, {"ids": ids})}
    org = organisation(settings)
    now = utcnow()
    rows = [
        mail_row(
            KIND,
            key,
            found[e.campaign_id].email,
            render(
                KIND,
                org,
                outcome=e.outcome,
                note=e.note,
                campaign_id=e.campaign_id,
                campaign_title=found[e.campaign_id].title,
            ),
            settings,
            now,
        )
        for key, e in waiting.items()
        if e.campaign_id in found
    ]
    if rows:
        add_mails(conn, rows)
    return len(rows)

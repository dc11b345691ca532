"""What organisers hear about their campaigns from admins (a review's
outcome), and what admins hear about campaigns (a first report).

Runs inside the outbox dispatcher's transaction (`outbox/handlers.py`); each
notification's `dedupe_key` names its cause, so a redelivered event writes
nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam
from sqlalchemy import select as core_select

from careforall.domain import notifications as words
from careforall.domain.events import CampaignReported, CampaignReviewed
from careforall.domain.notifications import NotificationKind
from careforall.domain.states import CampaignStatus, Role
from careforall.models import Campaign, User, table_of
from careforall.services.notifications import add_all, notification

_CAMPAIGNS = table_of(Campaign)
_TITLES = core_select(_CAMPAIGNS.c.id, _CAMPAIGNS.c.title).where(
    _CAMPAIGNS.c.id.in_(bindparam("ids", expanding=True))
)


_USERS = table_of(User)
_ADMINS = core_select(_USERS.c.id).where(_USERS.c.role == Role.ADMIN.value)


def _titles(conn: Connection, ids: Sequence[str]) -> dict[str, str]:
    rows = conn.execute(_TITLES, {"ids": sorted(set(ids))})
    return {row.id: row.title for row in rows}


def notify_reviews(conn: Connection, events: Sequence[CampaignReviewed]) -> None:
    """Tell each organiser what the admin decided, with the admin's note."""
    if not events:
        return
    titles = _titles(conn, [e.campaign_id for e in events])
    rows = []
    for event in events:
        kind = words.REVIEW_KINDS.get(CampaignStatus(event.outcome))
        if kind is None or event.campaign_id not in titles:
            continue
        message = words.campaign_reviewed(
            kind, campaign_title=titles[event.campaign_id], note=event.note
        )
        rows.append(
            notification(
                kind,
                message,
                # One per decision: a campaign suspended twice (lifted between)
                # is told twice, a redelivered event once.
                dedupe_key=f"{kind.value}:{event.campaign_id}:{event.decided_at}",
                user_id=event.owner_id,
                campaign_id=event.campaign_id,
            )
        )
    add_all(conn, rows)


def notify_reports(conn: Connection, events: Sequence[CampaignReported]) -> None:
    """Tell every admin of a campaign's first report; later reports of it add
    to the count on the admin page, not to anyone's notifications."""
    if not events:
        return
    titles = _titles(conn, [e.campaign_id for e in events])
    admins = list(conn.execute(_ADMINS).scalars())
    kind = NotificationKind.CAMPAIGN_REPORTED
    add_all(
        conn,
        [
            notification(
                kind,
                words.campaign_reported(campaign_title=titles[campaign_id]),
                dedupe_key=f"{kind.value}:{campaign_id}:{admin}",
                user_id=admin,
                campaign_id=campaign_id,
            )
            for campaign_id in sorted({e.campaign_id for e in events})
            if campaign_id in titles
            for admin in admins
        ],
    )

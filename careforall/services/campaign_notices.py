"""What organisers hear about their campaigns from admins: a review's outcome.

Runs inside the outbox dispatcher's transaction (`outbox/handlers.py`); each
notification's `dedupe_key` names the event's campaign and outcome, so a
redelivered event writes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam
from sqlalchemy import select as core_select

from careforall.domain import notifications as words
from careforall.domain.events import CampaignReviewed
from careforall.domain.states import CampaignStatus
from careforall.models import Campaign, table_of
from careforall.services.notifications import add_all, notification

_CAMPAIGNS = table_of(Campaign)
_TITLES = core_select(_CAMPAIGNS.c.id, _CAMPAIGNS.c.title).where(
    _CAMPAIGNS.c.id.in_(bindparam("ids", expanding=True))
)


def notify_reviews(conn: Connection, events: Sequence[CampaignReviewed]) -> None:
    """Tell each organiser what the admin decided, with the admin's note."""
    if not events:
        return
    ids = sorted({e.campaign_id for e in events})
    titles = {row.id: row.title for row in conn.execute(_TITLES, {"ids": ids})}
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

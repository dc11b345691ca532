"""Donations for export: pledges with their campaign's title, read in chunks.

Each chunk is its own short read (keyset on the pledge id, oldest first), so a
long download never holds one read transaction open for its whole length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.rules import Principal, require_admin
from careforall.models import Campaign, Pledge
from careforall.services.admin import PledgeFilter, pledge_conditions

CHUNK_ROWS = 500


@dataclass(frozen=True)
class Donation:
    pledge: Pledge
    campaign_title: str


def donations(
    db: Database,
    *,
    principal: Principal | None,
    filter: PledgeFilter,
    chunk_rows: int | None = None,
) -> Iterator[list[Donation]]:
    """Chunks of matching donations, oldest first. Checks run now, reads later."""
    require_admin(principal)
    checked = filter.checked()
    return _chunks(db, checked, chunk_rows or CHUNK_ROWS)


def _chunks(db: Database, flt: PledgeFilter, size: int) -> Iterator[list[Donation]]:
    after: str | None = None
    while True:
        query = (
            select(Pledge, Campaign.title)
            .join(Campaign, col(Campaign.id) == col(Pledge.campaign_id))
            .where(*pledge_conditions(flt))
        )
        if after is not None:
            query = query.where(col(Pledge.id) > after)
        with db.read() as session:
            rows = session.exec(query.order_by(col(Pledge.id)).limit(size)).all()
        if not rows:
            return
        yield [Donation(pledge=p, campaign_title=t) for p, t in rows]
        if len(rows) < size:
            return
        after = rows[-1][0].id

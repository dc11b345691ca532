"""The public list of campaigns: search, category filter and sorts, keyset-paged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, case, cast, func, select
from sqlmodel import Session, col
from sqlmodel import select as select_rows

from careforall.domain.clock import utcnow
from careforall.domain.search import (
    TRENDING_WINDOW,
    CampaignSort,
    check_category_filter,
    search_words,
)
from careforall.domain.states import HIDDEN_FROM_PUBLIC, CampaignStatus, PledgeStatus
from careforall.models import Campaign, CampaignTotals, Pledge, PledgeTransition
from careforall.services.pagination import Page, keyed_page, newest_first
from careforall.services.search import matches

RELEVANCE = "RELEVANCE"  # the order of a search asked with the default sort
MAX_CATEGORIES = 50
# CLOSEST_TO_GOAL compares raised / goal in millionths, in whole numbers so
# that a cursor holds the key exactly (a 32-bit goal keeps it within 64 bits).
_PARTS = 1_000_000


def _public() -> ColumnElement[bool]:
    return col(Campaign.status).not_in([s.value for s in HIDDEN_FROM_PUBLIC])


def _raised() -> ColumnElement[Any]:
    return func.coalesce(col(CampaignTotals.raised_cents), 0)


def _with_totals(query: Select[Any]) -> Select[Any]:
    return query.outerjoin(
        CampaignTotals, col(CampaignTotals.campaign_id) == col(Campaign.id)
    )


def _sorted(
    query: Select[Any], sort: CampaignSort, now: datetime
) -> tuple[Select[Any], ColumnElement[Any]]:
    """The query joined to what `sort` orders by, and that key (descending)."""
    if sort is CampaignSort.MOST_RAISED:
        # In minor units whatever the currency: most campaigns share one, and
        # converting would need exchange rates the platform does not keep.
        return _with_totals(query), _raised()
    if sort is CampaignSort.CLOSEST_TO_GOAL:
        # Nearest to its goal first; those that reached it go last (-1):
        # they need the help least.
        progress = cast(_raised(), BigInteger) * _PARTS // col(Campaign.goal_cents)
        key = case((_raised() >= col(Campaign.goal_cents), -1), else_=progress)
        return _with_totals(query), key
    recent = (
        select(col(Pledge.campaign_id), func.count().label("captures"))
        .join(PledgeTransition, col(PledgeTransition.pledge_id) == col(Pledge.id))
        .where(
            col(PledgeTransition.to_status) == PledgeStatus.CAPTURED.value,
            col(PledgeTransition.at) > now - TRENDING_WINDOW,
            col(PledgeTransition.at) <= now,
        )
        .group_by(col(Pledge.campaign_id))
        .subquery("recent")
    )
    query = query.outerjoin(recent, recent.c.campaign_id == col(Campaign.id))
    return query, func.coalesce(recent.c.captures, 0)


def list_public_campaigns(
    session: Session,
    *,
    first: int,
    after: str | None,
    status: CampaignStatus | None = None,
    search: str | None = None,
    category: str | None = None,
    sort: CampaignSort = CampaignSort.NEWEST,
) -> Page[Campaign]:
    """Campaigns anyone may see (never IN_REVIEW or REJECTED), filtered by
    status, category and the words of `search`, in `sort`'s order (ties newest
    first). A search in the default order lists the best matches first."""
    words = search_words(search)
    category = check_category_filter(category)
    rows = select_rows(Campaign).where(_public())
    if status is not None:
        rows = rows.where(col(Campaign.status) == status.value)
    if category is not None:
        rows = rows.where(col(Campaign.category) == category)
    if not words and sort is CampaignSort.NEWEST:
        # The cursors of the list before sorts existed keep working.
        return newest_first(session, rows, first=first, after=after)
    query: Select[Any] = rows
    key: ColumnElement[Any]
    key_type: type[int] | type[float] = int
    if words:
        matched = matches(session, words)
        query = query.join(matched, matched.c.campaign_id == col(Campaign.id))
    if words and sort is CampaignSort.NEWEST:
        kind, key, key_type = RELEVANCE, matched.c.relevance, float
    else:
        kind = sort.value
        query, key = _sorted(query, sort, utcnow())
    return keyed_page(
        session,
        query,
        key=key,
        kind=kind,
        key_type=key_type,
        first=first,
        after=after,
    )


def public_categories(session: Session) -> list[str]:
    """The categories of the campaigns anyone may see, most used first."""
    count = func.count()
    query = (
        select(col(Campaign.category))
        .where(_public())
        .group_by(col(Campaign.category))
        .order_by(count.desc(), col(Campaign.category))
        .limit(MAX_CATEGORIES)
    )
    return list(session.execute(query).scalars())

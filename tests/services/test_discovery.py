"""The public campaign list: full-text search, category filter, the four sorts
and their cursors, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import Session, col

from careforall.db import Database
from careforall.domain.clock import new_id, utcnow
from careforall.domain.errors import BadUserInput
from careforall.domain.rules import Principal
from careforall.domain.search import CampaignSort
from careforall.models import Campaign, CampaignTotals, Pledge, PledgeTransition
from careforall.services import discovery
from careforall.services.campaign_edits import CampaignChanges, update_campaign
from careforall.services.unit_of_work import UnitOfWork
from tests.services.conftest import MakeCampaign


def listed(db: Database, **arguments: Any) -> list[str]:
    """Every id the list gives, page by page."""
    ids: list[str] = []
    after = None
    with Session(db.engine) as session:
        while True:
            page = discovery.list_public_campaigns(
                session, after=after, **({"first": 2} | arguments)
            )
            ids += [c.id for c in page.items]
            if not page.has_next_page:
                return ids
            after = page.end_cursor


def found(db: Database, search: str, **arguments: Any) -> list[str]:
    return listed(db, search=search, **arguments)


def set_raised(db: Database, campaign: Campaign, raised: int) -> None:
    with Session(db.engine) as session:
        session.execute(
            update(CampaignTotals)
            .where(col(CampaignTotals.campaign_id) == campaign.id)
            .values(raised_cents=raised)
        )
        session.commit()


def captured(db: Database, campaign: Campaign, at: Any) -> None:
    """A donation captured at `at`, as its history records it."""
    pledge_id = new_id("plg")
    with Session(db.engine) as session:
        session.add(
            Pledge(
                id=pledge_id,
                campaign_id=campaign.id,
                amount_cents=100,
                currency="USD",
                status="CAPTURED",
                idempotency_scope="test",
                idempotency_key=pledge_id,
            )
        )
        session.flush()
        session.add(
            PledgeTransition(
                pledge_id=pledge_id,
                from_status="AUTHORIZED",
                to_status="CAPTURED",
                at=at,
                source="test",
            )
        )
        session.commit()


def test_search_finds_a_word_of_the_story_and_a_prefix_of_the_last_word(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    knee = make_campaign(
        organiser, title="Help Sam walk", description="Sam needs a new knee joint."
    )
    heart = make_campaign(
        organiser, title="Heart surgery", description="Ana's operation in Lisbon."
    )
    assert found(db, "knee") == [knee.id]
    assert found(db, "KNEE") == [knee.id]
    assert found(db, "lisb") == [heart.id]  # the last word as a prefix
    assert found(db, "sam jo") == [knee.id]  # every word must match
    assert found(db, "sam heart") == []
    assert found(db, "surg") == [heart.id]  # titles too


def test_search_ignores_hidden_campaigns(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    make_campaign(organiser, review=True, description="Dialysis for Ben.")
    shown = make_campaign(organiser, description="Dialysis for Eva.")
    assert found(db, "dialysis") == [shown.id]


@pytest.mark.parametrize(
    "text",
    [
        '"*:(',
        "knee*",
        'knee" OR "heart',
        "knee:*",
        "NEAR(knee heart)",
        "knee & !heart",
        "'",
        "(",
        "title:knee",
        "-knee",
        "^knee",
        "knee | x",
    ],
)
def test_search_survives_query_syntax(
    db: Database, make_campaign: MakeCampaign, organiser: Principal, text: str
) -> None:
    knee = make_campaign(organiser, title="Knee", description="A new knee.")
    result = found(db, text)
    assert set(result) <= {knee.id}


def test_a_search_without_words_lists_everything(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    made = [make_campaign(organiser).id for _ in range(3)]
    assert found(db, '"*:(') == made[::-1]
    assert found(db, "   ") == made[::-1]


def test_edits_reach_the_index(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    campaign = make_campaign(organiser, description="Chemotherapy for Lea.")
    other = make_campaign(organiser, description="Chemotherapy for Max.")
    update_campaign(
        UnitOfWork(db),
        principal=organiser,
        campaign_id=campaign.id,
        changes=CampaignChanges(description="Radiotherapy for Lea."),
    )
    assert found(db, "radiotherapy") == [campaign.id]
    assert found(db, "chemotherapy") == [other.id]
    assert found(db, "cmp") == []  # ids are indexed, never searched


def test_the_best_matches_come_first_and_pages_hold_each_once(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    strong = make_campaign(
        organiser, title="Insulin for Tom", description="Insulin, insulin pumps."
    )
    weak = [
        make_campaign(
            organiser,
            description="A long story about a family, their house, their town, "
            "their work, and at the end a word about insulin.",
        )
        for _ in range(4)
    ]
    result = found(db, "insulin", first=1)
    assert result[0] == strong.id
    assert sorted(result[1:]) == sorted(w.id for w in weak)
    assert len(result) == 5


def test_category_filters(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    surgery = make_campaign(organiser, category="surgery")
    make_campaign(organiser, category="cancer")
    assert listed(db, category="surgery") == [surgery.id]
    assert listed(db, category="nothing") == []
    with Session(db.engine) as session:
        assert discovery.public_categories(session) == ["cancer", "surgery"]


def test_most_raised_orders_by_raised_with_ties_newest_first(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    rows = [make_campaign(organiser) for _ in range(5)]
    for row, raised in zip(rows, [300, 100, 300, 0, 200], strict=True):
        set_raised(db, row, raised)
    result = listed(db, sort=CampaignSort.MOST_RAISED)
    assert result == [rows[2].id, rows[0].id, rows[4].id, rows[1].id, rows[3].id]


def test_closest_to_goal_puts_reached_goals_last(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    half = make_campaign(organiser, goal_cents=1000)
    most = make_campaign(organiser, goal_cents=1000)
    reached = make_campaign(organiser, goal_cents=1000)
    none = make_campaign(organiser, goal_cents=1000)
    also_half = make_campaign(organiser, goal_cents=2000)
    for row, raised in [(half, 500), (most, 900), (reached, 1000), (also_half, 1000)]:
        set_raised(db, row, raised)
    result = listed(db, sort=CampaignSort.CLOSEST_TO_GOAL)
    assert result == [most.id, also_half.id, half.id, none.id, reached.id]


def test_trending_counts_captures_of_the_last_48_hours(
    db: Database,
    make_campaign: MakeCampaign,
    organiser: Principal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = utcnow()
    old, busy, quiet, fresh = (make_campaign(organiser) for _ in range(4))
    for _ in range(5):
        captured(db, old, now - timedelta(hours=49))
    for _ in range(2):
        captured(db, busy, now - timedelta(hours=47))
    captured(db, quiet, now - timedelta(hours=1))
    assert listed(db, sort=CampaignSort.TRENDING) == [
        busy.id,
        quiet.id,
        fresh.id,
        old.id,
    ]
    # Two days later, nothing above counts any more: newest first.
    monkeypatch.setattr(discovery, "utcnow", lambda: now + timedelta(hours=48))
    assert listed(db, sort=CampaignSort.TRENDING) == [
        fresh.id,
        quiet.id,
        busy.id,
        old.id,
    ]
    # Back then, only the old ones did.
    monkeypatch.setattr(discovery, "utcnow", lambda: now - timedelta(hours=48))
    assert listed(db, sort=CampaignSort.TRENDING)[0] == old.id


@pytest.mark.parametrize("sort", list(CampaignSort))
def test_every_sort_pages_through_ties_without_duplicates_or_gaps(
    db: Database, make_campaign: MakeCampaign, organiser: Principal, sort: CampaignSort
) -> None:
    rows = [make_campaign(organiser, description="Physio") for _ in range(7)]
    for i, row in enumerate(rows):
        set_raised(db, row, 100 * (i % 2))
    for first in (1, 2, 3):
        result = listed(db, sort=sort, first=first)
        assert sorted(result) == sorted(r.id for r in rows)
        searched = listed(db, sort=sort, first=first, search="physio")
        assert sorted(searched) == sorted(r.id for r in rows)


def test_a_cursor_of_another_order_is_refused(
    db: Database, make_campaign: MakeCampaign, organiser: Principal
) -> None:
    for _ in range(3):
        make_campaign(organiser)
    with Session(db.engine) as session:
        raised = discovery.list_public_campaigns(
            session, first=1, after=None, sort=CampaignSort.MOST_RAISED
        )
        newest = discovery.list_public_campaigns(session, first=1, after=None)
        for cursor, sort in [
            (raised.end_cursor, CampaignSort.TRENDING),
            (raised.end_cursor, CampaignSort.NEWEST),
            (newest.end_cursor, CampaignSort.MOST_RAISED),
            ("bm9uc2Vuc2U", CampaignSort.CLOSEST_TO_GOAL),
        ]:
            with pytest.raises(BadUserInput):
                discovery.list_public_campaigns(
                    session, first=1, after=cursor, sort=sort
                )
        with pytest.raises(BadUserInput):
            discovery.list_public_campaigns(
                session,
                first=1,
                after=raised.end_cursor,
                search="x",
            )


def test_a_search_too_long_is_refused(db: Database) -> None:
    with Session(db.engine) as session, pytest.raises(BadUserInput):
        discovery.list_public_campaigns(session, first=1, after=None, search="x" * 201)

"""Search and sorts over 10,000 campaigns: the indexes are used and the time
of each query is printed (`pytest -s`); no timing is asserted."""

from __future__ import annotations

import random
import time

from sqlalchemy import insert, text
from sqlmodel import Session

from careforall.db import Database
from careforall.domain.clock import new_id, utcnow
from careforall.domain.rules import Principal
from careforall.domain.search import CampaignSort
from careforall.models import Campaign, CampaignTotals, table_of
from careforall.services import discovery

COUNT = 10_000
WORDS = (
    "surgery knee heart dialysis chemotherapy insulin wheelchair hospital "
    "family treatment recovery therapy transplant cancer physiotherapy"
).split()


def seed(db: Database, owner: Principal) -> None:
    rng = random.Random(18)
    now = utcnow()
    campaigns, totals = [], []
    for i in range(COUNT):
        campaign_id = new_id("cmp")
        story = " ".join(rng.choice(WORDS) for _ in range(60))
        campaigns.append(
            {
                "id": campaign_id,
                "title": f"Campaign {i} {rng.choice(WORDS)}",
                "description": f"{story} number{i}",
                "category": rng.choice(("surgery", "cancer", "rehab")),
                "goal_cents": 100_000,
                "currency": "USD",
                "status": "ACTIVE",
                "owner_id": owner.id,
                "created_at": now,
                "updated_at": now,
                "paid_out_cents": 0,
            }
        )
        totals.append(
            {
                "campaign_id": campaign_id,
                "raised_cents": rng.randrange(0, 150_000),
                "pledge_count": 0,
                "updated_at": now,
            }
        )
    with db.engine.begin() as conn:
        conn.execute(insert(table_of(Campaign)), campaigns)
        conn.execute(insert(table_of(CampaignTotals)), totals)
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE campaigns"))


def test_search_and_sorts_on_ten_thousand_campaigns(
    db: Database, organiser: Principal, database_kind: str
) -> None:
    seed(db, organiser)
    cases: list[tuple[str, dict[str, object]]] = [
        ("search one rare word", {"search": "number4242"}),
        ("search two words, prefix", {"search": "knee dialy"}),
        ("search common word", {"search": "hospital"}),
        ("newest, category", {"category": "rehab"}),
        ("most raised", {"sort": CampaignSort.MOST_RAISED}),
        ("closest to goal", {"sort": CampaignSort.CLOSEST_TO_GOAL}),
        ("trending", {"sort": CampaignSort.TRENDING}),
    ]
    with Session(db.engine) as session:
        for name, arguments in cases:
            discovery.list_public_campaigns(  # warm up
                session, first=20, after=None, **arguments
            )
            runs = 5
            start = time.perf_counter()
            for _ in range(runs):
                page = discovery.list_public_campaigns(
                    session, first=20, after=None, **arguments
                )
            ms = (time.perf_counter() - start) / runs * 1000
            print(f"\n{database_kind} {COUNT:,} campaigns, {name}: {ms:.1f} ms")
            assert page.items
        rare = discovery.list_public_campaigns(
            session, first=20, after=None, search="number4242"
        )
        assert [c.description.split()[-1] for c in rare.items] == ["number4242"]

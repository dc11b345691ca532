"""An open campaignTotals subscription holds no more memory after many pushes:
graphql-core's per-event executors shared (and grew) the subscription's memos,
about 1.4 KB a push, for as long as it stayed open."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from types import SimpleNamespace
from typing import Any

from careforall.api import execution
from careforall.api.context import Context
from careforall.api.schema import schema
from careforall.broadcaster import Broadcaster
from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.services.totals import TotalsFigures
from careforall.settings import Settings
from tests import factories as f
from tests.helpers.api import GQL

TOTALS = """
subscription($id: ID!) {
  campaignTotals(campaignId: $id) { campaignId raisedCents pledgeCount updatedAt }
}"""
PUSHES = 300


async def subscribe(
    db: Database,
    settings: Settings,
    broadcaster: Broadcaster[TotalsFigures],
    campaign_id: str,
) -> Any:
    """A campaignTotals subscription run through the schema, fed by `broadcaster`."""
    context = Context(
        request=SimpleNamespace(headers={}),  # type: ignore[arg-type]
        response=None,
        runtime=SimpleNamespace(db=db, settings=settings),  # type: ignore[arg-type]
        broadcaster=broadcaster,
    )
    return await schema.subscribe(
        TOTALS, variable_values={"id": campaign_id}, context_value=context
    )


def test_an_open_subscription_holds_no_more_after_many_pushes(
    gql: GQL, db: Database, settings: Settings
) -> None:
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]

    async def held_after_pushes() -> int:
        broadcaster: Broadcaster[TotalsFigures] = Broadcaster()
        stream = await subscribe(db, settings, broadcaster, campaign_id)

        async def push(cents: int) -> None:
            broadcaster.publish(
                campaign_id,
                TotalsFigures(campaign_id, cents, cents, utcnow()),
            )
            result = await stream.__anext__()
            assert result.data["campaignTotals"]["raisedCents"] == cents, result

        await stream.__anext__()  # the current totals
        for cents in range(1, 21):  # every lazily built cache is built by now
            await push(cents)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for cents in range(21, 21 + PUSHES):
                await push(cents)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            await stream.aclose()
        return grown

    grown = asyncio.run(held_after_pushes())
    # The leak held about 420 KB here (1.4 KB a push); what is left is noise.
    assert grown < 60 * 1024, f"{grown / PUSHES:.0f} bytes more held per push"


def test_each_event_gets_memos_of_its_own_under_the_libraries_names(
    gql: GQL, db: Database, settings: Settings, monkeypatch: Any
) -> None:
    """The reset reads graphql-core's private attribute names: each must exist
    on the subscription's executor, and each event's copy must hold its own."""
    organiser = f.register(gql)
    campaign_id = f.campaign(gql, organiser.token)["id"]
    seen: list[tuple[Any, Any]] = []
    build = execution.EventScopedExecutionContext.build_per_event_executor

    def spy(self: Any, payload: Any) -> Any:
        executor = build(self, payload)
        seen.append((self, executor))
        return executor

    monkeypatch.setattr(
        execution.EventScopedExecutionContext, "build_per_event_executor", spy
    )

    async def two_pushes() -> None:
        broadcaster: Broadcaster[TotalsFigures] = Broadcaster()
        stream = await subscribe(db, settings, broadcaster, campaign_id)
        try:
            for cents in (100, 200):
                broadcaster.publish(
                    campaign_id, TotalsFigures(campaign_id, cents, 1, utcnow())
                )
                result = await stream.__anext__()
                assert result.errors is None, result.errors
        finally:
            await stream.aclose()

    asyncio.run(two_pushes())
    assert len(seen) >= 2
    for parent, executor in seen:
        for name in execution.MEMOS:
            assert hasattr(parent, name), f"graphql-core has no {name} any more"
            assert getattr(executor, name) is not getattr(parent, name), name

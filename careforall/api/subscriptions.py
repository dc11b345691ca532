"""Subscriptions: live campaign totals from the in-process broadcaster."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import nullcontext

import strawberry

from careforall.api.sockets import subscription_slot
from careforall.api.types import CampaignTotals, Info
from careforall.collector import open_subscription
from careforall.domain.errors import NotFound
from careforall.services import totals


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The current totals at once, then each change of them."
    )
    async def campaign_totals(
        self, info: Info, campaign_id: strawberry.ID
    ) -> AsyncGenerator[CampaignTotals, None]:
        ctx = info.context
        cap = ctx.runtime.settings.ws_max_subscriptions
        # Run once for many sockets (api/fanout.py), it is counted by each of them.
        slot = nullcontext() if ctx.shared else subscription_slot(ctx.request, cap)
        # Subscribe before reading, so no change falls between the two.
        async with (
            slot,
            ctx.broadcaster.subscribe(str(campaign_id)) as subscriber,
        ):
            row = totals.campaign_totals(ctx.runtime.db, str(campaign_id))
            if row is None:
                raise NotFound("There is no campaign with that id.")
            with nullcontext() if ctx.shared else open_subscription():
                last = row.updated_at, row.raised_cents, row.pledge_count
                yield CampaignTotals.from_model(row)
                while True:
                    row = await subscriber.next()
                    current = row.updated_at, row.raised_cents, row.pledge_count
                    if current != last:
                        last = current
                        yield CampaignTotals.from_model(row)

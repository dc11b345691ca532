"""DataLoaders: one query per kind of row for a whole response, not one per item,
each run in a worker thread so the event loop never waits on the database."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Row
from sqlmodel import Session
from strawberry.dataloader import DataLoader

from careforall.concurrency import in_thread
from careforall.db import Database
from careforall.models import Campaign, CampaignUpdate, Payout, PledgeTransition, User
from careforall.services import (
    auth,
    campaign_updates,
    campaigns,
    payouts,
    pledges,
    stripe_payments,
    totals,
)
from careforall.services.pagination import Page
from careforall.services.totals import TotalsFigures

R = TypeVar("R")

# (campaign id, first) -> that campaign's newest `first` donations.
RecentKey = tuple[str, int]
# (campaign id, first, after) -> one page of that campaign's updates.
UpdatesKey = tuple[str, int, str | None]


class Loaders:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.users: DataLoader[str, User | None] = DataLoader(self._users)
        self.campaigns: DataLoader[str, Campaign | None] = DataLoader(self._campaigns)
        self.totals: DataLoader[str, TotalsFigures | None] = DataLoader(self._totals)
        self.history: DataLoader[str, list[PledgeTransition]] = DataLoader(
            self._history
        )
        self.recent_donations: DataLoader[RecentKey, list[Row[Any]]] = DataLoader(
            self._recent_donations
        )
        self.payouts: DataLoader[str, list[Payout]] = DataLoader(self._payouts)
        self.refunded: DataLoader[str, int] = DataLoader(self._refunded)
        self.updates: DataLoader[UpdatesKey, Page[CampaignUpdate]] = DataLoader(
            self._updates
        )
        self.payment_intents: DataLoader[str, str | None] = DataLoader(
            self._payment_intents
        )

    async def _read(self, read: Callable[[Session], R]) -> R:
        """`read` in a session of its own, in a worker thread."""

        def run() -> R:
            with self._db.read() as session:
                return read(session)

        return await in_thread(run)

    async def _users(self, ids: Sequence[str]) -> list[User | None]:
        found = await self._read(lambda s: auth.users_by_id(s, ids))
        return [found.get(i) for i in ids]

    async def _campaigns(self, ids: Sequence[str]) -> list[Campaign | None]:
        found = await self._read(lambda s: campaigns.campaigns_by_id(s, ids))
        return [found.get(i) for i in ids]

    async def _totals(self, ids: Sequence[str]) -> list[TotalsFigures | None]:
        found = await self._read(lambda s: totals.read_totals(s, ids))
        return [found.get(i) for i in ids]

    async def _payment_intents(self, ids: Sequence[str]) -> list[str | None]:
        found = await self._read(lambda s: stripe_payments.intents_of(s, list(ids)))
        return [found.get(i) for i in ids]

    async def _history(self, ids: Sequence[str]) -> list[list[PledgeTransition]]:
        found = await self._read(lambda s: pledges.history(s, list(ids)))
        return [found[i] for i in ids]

    async def _recent_donations(
        self, keys: Sequence[RecentKey]
    ) -> list[list[Row[Any]]]:
        """One statement per distinct `first` (a response usually has one)."""

        def read(session: Session) -> dict[RecentKey, list[Row[Any]]]:
            found: dict[RecentKey, list[Row[Any]]] = {}
            for first in sorted({f for _, f in keys}):
                ids = [c for c, f in keys if f == first]
                rows = pledges.recent_donations(session, campaign_ids=ids, first=first)
                found.update(((c, first), r) for c, r in rows.items())
            return found

        found = await self._read(read)
        return [found[k] for k in keys]

    async def _payouts(self, ids: Sequence[str]) -> list[list[Payout]]:
        found = await self._read(lambda s: payouts.payouts_of(s, ids))
        return [found[i] for i in ids]

    async def _refunded(self, ids: Sequence[str]) -> list[int]:
        found = await self._read(lambda s: payouts.refunded_cents(s, ids))
        return [found[i] for i in ids]

    async def _updates(self, keys: Sequence[UpdatesKey]) -> list[Page[CampaignUpdate]]:
        """A page per key: a response rarely asks for more than one."""

        def read(session: Session) -> list[Page[CampaignUpdate]]:
            return [
                campaign_updates.updates_page(
                    session, campaign_id=c, first=first, after=after
                )
                for c, first, after in keys
            ]

        return await self._read(read)

"""DataLoaders: one query per kind of row for a whole response, not one per item."""

from __future__ import annotations

from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from careforall.db import Database
from careforall.models import Campaign, PledgeTransition, User
from careforall.services import auth, campaigns, pledges, totals
from careforall.services.totals import TotalsFigures


class Loaders:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.users: DataLoader[str, User | None] = DataLoader(self._users)
        self.campaigns: DataLoader[str, Campaign | None] = DataLoader(self._campaigns)
        self.totals: DataLoader[str, TotalsFigures | None] = DataLoader(self._totals)
        self.history: DataLoader[str, list[PledgeTransition]] = DataLoader(
            self._history
        )

    async def _users(self, ids: Sequence[str]) -> list[User | None]:
        with self._db.read() as session:
            found = auth.users_by_id(session, ids)
        return [found.get(i) for i in ids]

    async def _campaigns(self, ids: Sequence[str]) -> list[Campaign | None]:
        with self._db.read() as session:
            found = campaigns.campaigns_by_id(session, ids)
        return [found.get(i) for i in ids]

    async def _totals(self, ids: Sequence[str]) -> list[TotalsFigures | None]:
        with self._db.read() as session:
            found = totals.read_totals(session, ids)
        return [found.get(i) for i in ids]

    async def _history(self, ids: Sequence[str]) -> list[list[PledgeTransition]]:
        with self._db.read() as session:
            found = pledges.history(session, list(ids))
        return [found[i] for i in ids]

"""DataLoaders: one query per kind of row for a whole response, not one per item."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlmodel import SQLModel, col, select
from strawberry.dataloader import DataLoader

from careforall.db import Database
from careforall.models import Campaign, CampaignTotals, PledgeTransition, User
from careforall.services.pledges import history

M = TypeVar("M", bound=SQLModel)


class Loaders:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.users: DataLoader[str, User | None] = DataLoader(self._users)
        self.campaigns: DataLoader[str, Campaign | None] = DataLoader(self._campaigns)
        self.totals: DataLoader[str, CampaignTotals | None] = DataLoader(self._totals)
        self.history: DataLoader[str, list[PledgeTransition]] = DataLoader(
            self._history
        )

    def _by_key(self, model: type[M], key: str, ids: Sequence[str]) -> list[M | None]:
        with self._db.read() as session:
            column = col(getattr(model, key))
            rows = session.exec(select(model).where(column.in_(list(ids)))).all()
        found = {getattr(row, key): row for row in rows}
        return [found.get(i) for i in ids]

    async def _users(self, ids: Sequence[str]) -> list[User | None]:
        return self._by_key(User, "id", ids)

    async def _campaigns(self, ids: Sequence[str]) -> list[Campaign | None]:
        return self._by_key(Campaign, "id", ids)

    async def _totals(self, ids: Sequence[str]) -> list[CampaignTotals | None]:
        return self._by_key(CampaignTotals, "campaign_id", ids)

    async def _history(self, ids: Sequence[str]) -> list[list[PledgeTransition]]:
        with self._db.read() as session:
            found = history(session, list(ids))
        return [found[i] for i in ids]

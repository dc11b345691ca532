"""What the outside layers share for one running app: database, keys, provider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

from careforall.db import Database
from careforall.payments.provider import PaymentProvider
from careforall.services.auth import TokenKeys
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    keys: TokenKeys
    provider: PaymentProvider
    webhook_secret: str

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db)

    async def write(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a write service off the event loop: commits wait for locks and fsync."""
        return await run_in_threadpool(fn, *args, **kwargs)

"""What the outside layers share for one running app: database, keys, provider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from careforall import tracing
from careforall.db import Database
from careforall.domain.errors import ServiceBusy
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

        def call() -> R:
            # The span opens in the worker thread, so the events the service
            # commits carry its trace context.
            if not tracing.enabled():
                return fn(*args, **kwargs)
            with tracing.span(f"service {getattr(fn, '__name__', 'call')}"):
                return fn(*args, **kwargs)

        try:
            return await run_in_threadpool(call)
        except OperationalError as exc:
            # The write lock stayed taken past the busy timeout (an overload):
            # the transaction rolled back, so the caller may simply retry.
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise ServiceBusy() from None
            raise

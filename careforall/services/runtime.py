"""What the outside layers share for one running app: database, keys, provider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from careforall import tracing
from careforall.db import Database
from careforall.domain.errors import ServiceBusy
from careforall.payments.provider import PaymentProvider
from careforall.services.auth import TokenKeys
from careforall.services.unit_of_work import UnitOfWork
from careforall.services.writer import Writer, is_busy
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
    writer: Writer | None = None

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
            if is_busy(exc):
                raise ServiceBusy() from None
            raise

    async def write_grouped(
        self,
        fn: Callable[Concatenate[UnitOfWork, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run a short write service in the writer's next batch (group commit).

        Only for services that write nothing but the database: one that calls
        the payment provider would wait for the batch it is part of.
        """
        if self.writer is None:
            return await self.write(fn, self.uow(), *args, **kwargs)

        def call(uow: UnitOfWork) -> R:
            if not tracing.enabled():
                return fn(uow, *args, **kwargs)
            with tracing.span(f"service {getattr(fn, '__name__', 'call')}"):
                return fn(uow, *args, **kwargs)

        return await self.writer.run(call)

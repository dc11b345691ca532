"""What the outside layers share for one running app: database, keys, provider."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.concurrency import run_in_threadpool

from careforall import metrics, tracing
from careforall.db import RETRY_SQLSTATES, Database, sqlstate
from careforall.domain.errors import ServiceBusy
from careforall.media import LocalMediaStore, MediaStore
from careforall.payments.provider import PaymentProvider
from careforall.services.auth import TokenKeys
from careforall.services.unit_of_work import UnitOfWork
from careforall.services.webhook_log import RefusalSampler
from careforall.services.write_health import WriteHealth
from careforall.services.writer import Writer, is_busy
from careforall.settings import Settings

# How many times a write runs when PostgreSQL reports a conflict.
CONFLICT_ATTEMPTS = 5

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
    # Uploaded files (campaign images): `media_store(settings)` chooses it.
    media: MediaStore = field(kw_only=True)
    # Whether writes pass lately (readiness), watching every write on `db`.
    writes: WriteHealth = field(init=False, repr=False, compare=False)
    # Unverified webhook refusals: counted here, sampled into the webhook log.
    refusals: RefusalSampler = field(
        default_factory=RefusalSampler, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        health = WriteHealth.watching(
            self.db, busy_timeout=self.settings.busy_timeout_ms / 1000
        )
        object.__setattr__(self, "writes", health)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db)

    async def write(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a write service off the event loop: commits wait for locks and fsync."""

        def once() -> R:
            # The span opens in the worker thread, so the events the service
            # commits carry its trace context.
            if not tracing.enabled():
                return fn(*args, **kwargs)
            with tracing.span(f"service {getattr(fn, '__name__', 'call')}"):
                return fn(*args, **kwargs)

        def call() -> R:
            # PostgreSQL: a deadlock or serialization failure rolled the
            # transaction back; running the service again is what a client
            # would do, so it is done here, after a short random pause.
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    return once()
                except DBAPIError as exc:
                    if sqlstate(exc) not in RETRY_SQLSTATES:
                        raise
                    if attempt == CONFLICT_ATTEMPTS:
                        raise ServiceBusy() from None
                    metrics.DB_CONFLICT_RETRIES.inc()
                    time.sleep(random.uniform(0.005, 0.05) * attempt)
            raise AssertionError("unreachable")

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


def media_store(settings: Settings) -> MediaStore:
    """Where uploaded files go: a folder under the data folder. Another store
    (an S3-compatible bucket) would be chosen here from its settings."""
    return LocalMediaStore.for_settings(settings)

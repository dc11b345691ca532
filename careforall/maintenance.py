"""The server's periodic maintenance: retention (see `services.retention`),
and asking the payment provider about pledges whose events never came
(`services.payment_reconcile`).

A lifespan task: the first run comes soon after start (so a server that
restarts often still prunes), then one every `retention_interval_seconds`.
A failed run is logged and tried again at the next interval; on shutdown a
run in progress stops after its current batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from careforall.concurrency import in_thread
from careforall.db import Database
from careforall.media import MediaStore
from careforall.payments.provider import PaymentStates
from careforall.services.payment_reconcile import reconcile_payments
from careforall.services.retention import RetentionPolicy, prune
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings

log = logging.getLogger("careforall.retention")
payments_log = logging.getLogger("careforall.payments")

FIRST_RUN_DELAY_S = 60.0


async def run_retention(db: Database, settings: Settings, media: MediaStore) -> None:
    """Prune old finished rows and replaced images' files forever (returns
    at once when retention is off)."""
    policy = RetentionPolicy.from_settings(settings)
    if not policy.enabled:
        return
    await _every(
        settings.retention_interval_seconds,
        lambda stop: prune(
            UnitOfWork(db), policy=policy, should_stop=stop, media=media
        ),
        log,
        "retention run failed; will try again",
    )


async def run_payment_reconcile(
    db: Database,
    provider: PaymentStates,
    *,
    interval: float,
    older_than: timedelta,
) -> None:
    """Reconcile stuck pledges with the provider forever (returns at once
    when the interval is 0)."""
    await _every(
        interval,
        lambda stop: reconcile_payments(
            db, provider=provider, older_than=older_than, should_stop=stop
        ),
        payments_log,
        "payment reconcile failed; will try again",
    )


async def _every(
    interval: float,
    run: Callable[[Callable[[], bool]], object],
    logger: logging.Logger,
    failed: str,
) -> None:
    """Call `run(should_stop)` in a thread soon after start, then every
    `interval` seconds, forever (never when the interval is 0). A failed run
    is logged and tried again next time; on shutdown a run in progress is
    asked to stop after its current batch, before the engine it uses is
    disposed."""
    if interval <= 0:
        return
    delay = min(interval, FIRST_RUN_DELAY_S)
    stop = threading.Event()
    try:
        while True:
            await asyncio.sleep(delay)
            delay = interval
            try:
                await in_thread(partial(run, stop.is_set), on_cancel=stop.set)
            except Exception:
                # The database or the provider may be away: the next run tries.
                logger.exception(failed)
    finally:
        stop.set()

"""The server's periodic maintenance: retention (see `services.retention`).

A lifespan task: the first run comes soon after start (so a server that
restarts often still prunes), then one every `retention_interval_seconds`.
A failed run is logged and tried again at the next interval; on shutdown a
run in progress stops after its current batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from functools import partial

from careforall.concurrency import in_thread
from careforall.db import Database
from careforall.services.retention import RetentionPolicy, prune
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings

log = logging.getLogger("careforall.retention")

FIRST_RUN_DELAY_S = 60.0


async def run_retention(db: Database, settings: Settings) -> None:
    """Prune old finished rows forever (returns at once when retention is off)."""
    policy = RetentionPolicy.from_settings(settings)
    interval = settings.retention_interval_seconds
    if interval <= 0 or not policy.enabled:
        return
    delay = min(interval, FIRST_RUN_DELAY_S)
    stop = threading.Event()
    try:
        while True:
            await asyncio.sleep(delay)
            delay = interval
            try:
                # On shutdown the run stops after its batch, before the
                # engine it uses is disposed.
                await in_thread(
                    partial(
                        prune, UnitOfWork(db), policy=policy, should_stop=stop.is_set
                    ),
                    on_cancel=stop.set,
                )
            except Exception:
                # The database may be away or busy: the next run tries again.
                log.exception("retention run failed; will try again")
    finally:
        stop.set()

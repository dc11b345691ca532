"""The recurring gifts' scheduler: a lifespan task that charges the periods
due (`services/recurring_charges.py`).

Every process runs it: each claims the plans it charges (PostgreSQL: `FOR
UPDATE SKIP LOCKED` and a lease), and a period is one pledge whoever charges
it. On shutdown a run stops after the period it is charging.
"""

from __future__ import annotations

import logging
import threading
from functools import partial

from careforall.concurrency import Rounds, in_thread
from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.payments.provider import PaymentProvider
from careforall.services.recurring_charges import RunResult, run_due

log = logging.getLogger("careforall.recurring")


class RecurringScheduler(Rounds):
    def __init__(
        self, db: Database, provider: PaymentProvider, *, every: float
    ) -> None:
        self._db = db
        self._provider = provider
        self._every = every
        self._stop = threading.Event()
        super().__init__(log, "recurring gifts run")

    async def run(self) -> None:
        if self._every <= 0:
            return
        try:
            await self.run_rounds(self.charge_due)
        finally:
            self._stop.set()

    async def charge_due(self) -> float:
        """Charge what is due now; returns how long to wait for the next round."""
        result: RunResult = await in_thread(
            partial(
                run_due,
                self._db,
                provider=self._provider,
                now=utcnow(),
                should_stop=self._stop.is_set,
            ),
            on_cancel=self._stop.set,
        )
        figures = {k: v for k, v in vars(result).items() if k not in ("unknown_cards",)}
        if result.charged or result.declined or result.ended:
            log.info("recurring gifts charged", extra=figures)
        if result.unanswered is not None:
            # The periods stay due; the next round asks again, same keys.
            log.warning("recurring gifts run stopped: no answer", extra=figures)
        if result.unknown_cards:
            log.warning(
                "recurring gifts left uncharged: card saved with another provider",
                extra={"plans": result.unknown_cards},
            )
        return self._every

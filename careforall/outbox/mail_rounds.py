"""The periodic mails: a lifespan task that writes the organisers' hourly
digests (`services/organiser_mails.py`), the admins' alert mails
(`services/alert_mails.py`) and campaign updates' mails in batches
(`services/update_mails.py`) when they are due (which wakes the mail sender).

Each round is a few indexed reads when nothing is due. Every process runs
it; the services make two processes write each mail once.
"""

from __future__ import annotations

import logging
from functools import partial

from careforall.concurrency import Rounds, in_thread
from careforall.db import Database
from careforall.services import alert_mails, mail_queue, organiser_mails, update_mails
from careforall.settings import Settings

log = logging.getLogger("careforall.mail")

# How often to look: a digest goes out within this long of its hour's end.
ROUND_SECONDS = 60.0


class MailRounds(Rounds):
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        every: float = ROUND_SECONDS,
    ) -> None:
        self._db = db
        self._settings = settings
        self._every = every
        super().__init__(log, "periodic mails round")

    async def run(self) -> None:
        # A campaign update's mails are written at once, not next round.
        stop = self._db.on_mails_to_write(self.wake)
        try:
            await self.run_rounds(self.write_due)
        finally:
            stop()

    async def write_due(self) -> float:
        """Write the mails due now; returns how long to wait for the next round."""
        for write in (
            organiser_mails.write_due_digests,
            alert_mails.write_alert_mails,
            update_mails.write_due_update_mails,
        ):
            await in_thread(partial(write, self._db, self._settings))
        # Also without SMTP (no sender): the mails kept show here.
        await in_thread(partial(mail_queue.refresh_gauge, self._db))
        return self._every

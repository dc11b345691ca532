"""The mail sender: a lifespan task that sends the queued mails over SMTP.

Mails are written by an outbox handler in the dispatcher's transaction; this
task sends them afterwards, outside any transaction, and records each
outcome. It is a task of its own rather than a side-effect handler of the
dispatcher: an SMTP server that is down (each try waiting for a connection
timeout) must not hold up the delivery of the totals, and aiosmtplib is
asynchronous while the dispatcher's handlers run in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from careforall import metrics
from careforall.concurrency import Rounds, in_thread
from careforall.db import Database
from careforall.mail import smtp
from careforall.mail_config import SmtpServer
from careforall.models import Mail
from careforall.services import mail_queue
from careforall.services.mail_queue import Outcome

log = logging.getLogger("careforall.mail")

# Half the lease a process holds on the mails it sends (PostgreSQL).
SEND_LIMIT_SECONDS = mail_queue.LEASE_SECONDS / 2


@dataclass(frozen=True)
class _Unrecorded:
    row: Mail
    outcome: Outcome
    lease: datetime | None


class MailSender(Rounds):
    def __init__(
        self,
        db: Database,
        server: SmtpServer,
        *,
        sender: str,
        base_delay: float = 1.0,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._db = db
        self._server = server
        self._sender = sender
        self._base_delay = base_delay
        self._timeout = timeout
        self._tls_context = tls_context
        # Mails sent (or tried) whose outcome is not written yet, by id.
        self._unrecorded: dict[int, _Unrecorded] = {}
        super().__init__(log, "mail round")

    async def run(self) -> None:
        stop_listening = self._db.on_mail_queued(self.wake)
        try:
            # Mails kept while no SMTP server was configured go out now.
            released = await in_thread(partial(mail_queue.release_kept, self._db))
            if released:
                log.info("kept mails queued to send", extra={"mails": released})
            await self.run_rounds(self.send_due)
        finally:
            stop_listening()

    async def send_due(self) -> float:
        """Send the due mails; returns how long to wait before the next round.

        Outcomes that could not be recorded (the database away) are kept and
        recorded first in the next rounds; their mails are not taken (and so
        not sent) again meanwhile."""
        await in_thread(self._record_unrecorded)
        taken = await in_thread(
            partial(mail_queue.take_due, self._db, skip=set(self._unrecorded))
        )
        if not taken.rows:
            return min(taken.wait, 1.0) if self._unrecorded else taken.wait
        outcomes = await asyncio.gather(*(self._send(row) for row in taken.rows))
        for row, outcome in zip(taken.rows, outcomes, strict=True):
            self._unrecorded[outcome.mail_id] = _Unrecorded(row, outcome, taken.lease)
        await in_thread(self._record_unrecorded)
        await in_thread(partial(mail_queue.refresh_gauge, self._db))
        return min(taken.wait, 1.0) if self._unrecorded else taken.wait

    def _record_unrecorded(self) -> None:
        """Record the kept outcomes: a round's together, else one by one, so
        that one that cannot be written does not hold up the others."""
        by_lease: dict[datetime | None, list[_Unrecorded]] = {}
        for item in self._unrecorded.values():
            by_lease.setdefault(item.lease, []).append(item)
        for lease, items in by_lease.items():
            try:
                self._record(items, lease)
            except Exception:
                log.warning(
                    "mail outcomes not recorded; trying one by one",
                    extra={"mails": len(items)},
                    exc_info=True,
                )
                for item in items:
                    try:
                        self._record([item], lease)
                    except Exception:
                        log.warning(
                            "mail outcome not recorded; will try again",
                            extra={"mail_id": item.outcome.mail_id},
                        )

    def _record(self, items: list[_Unrecorded], lease: datetime | None) -> None:
        mail_queue.record(
            self._db,
            [(item.row, item.outcome) for item in items],
            base_delay=self._base_delay,
            lease=lease,
        )
        for item in items:
            self._unrecorded.pop(item.outcome.mail_id, None)

    async def _send(self, row: Mail) -> Outcome:
        assert row.id is not None
        message = smtp.build_message(
            sender=self._sender,
            to=row.to_address,
            subject=row.subject,
            text=row.text,
            html=row.html,
            mail_id=row.id,
            list_unsubscribe=row.list_unsubscribe,
        )
        extra = {"mail_id": row.id, "kind": row.kind, "attempts": row.attempts + 1}
        try:
            # The whole send, not each SMTP step: a server that answers slowly
            # must not keep it past the lease, when another process would
            # take the mail and send it again.
            async with asyncio.timeout(SEND_LIMIT_SECONDS):
                await smtp.send(
                    self._server,
                    message,
                    recipient=row.to_address,
                    timeout=self._timeout,
                    tls_context=self._tls_context,
                )
        except smtp.Refused as exc:
            log.error("mail refused for good", extra={**extra, "error": str(exc)})
            metrics.MAILS_DEAD.labels(row.kind).inc()
            return Outcome(row.id, f"refused: {exc}", refused=True)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("mail not sent; will retry", extra={**extra, "error": error})
            metrics.MAILS_FAILED.labels(row.kind).inc()
            return Outcome(row.id, error)
        metrics.MAILS_SENT.labels(row.kind).inc()
        return Outcome(row.id)

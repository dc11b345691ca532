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
from functools import partial

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
        super().__init__(log, "mail round")

    async def run(self) -> None:
        await self.run_rounds(self.send_due)

    async def send_due(self) -> float:
        """Send the due mails; returns how long to wait before the next round."""
        rows, wait = await in_thread(partial(mail_queue.take_due, self._db))
        if not rows:
            return wait
        outcomes = await asyncio.gather(*(self._send(row) for row in rows))
        await in_thread(
            partial(
                mail_queue.record,
                self._db,
                rows,
                list(outcomes),
                base_delay=self._base_delay,
            )
        )
        return wait

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
            return Outcome(row.id, f"refused: {exc}", refused=True)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("mail not sent; will retry", extra={**extra, "error": error})
            return Outcome(row.id, error)
        return Outcome(row.id)

"""Delivers the simulated provider's webhooks: signed POSTs, retried with backoff.

Like a real provider it keeps trying until it gets a 2xx; what it still owes
lives in `sim_webhooks`, so it carries on after a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind
from sqlalchemy import update
from sqlmodel import col, select

from careforall import tracing
from careforall.concurrency import Rounds, in_thread
from careforall.db import Database, lease_due
from careforall.domain.clock import utcnow
from careforall.models import SimWebhook
from careforall.payments.signature import sign

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("careforall.provider")

MAX_DELAY_SECONDS = 60.0
BATCH = 64
LEASE_SECONDS = 10.0


class WebhookSender(Rounds):
    def __init__(
        self,
        db: Database,
        *,
        secret: str,
        url: str,
        client_factory: Callable[[], httpx.AsyncClient],
        base_delay: float = 0.5,
    ) -> None:
        self._db = db
        self._secret = secret
        self._url = url
        self._client_factory = client_factory
        self._client: httpx.AsyncClient | None = None
        self._base_delay = base_delay
        super().__init__(log, "webhook delivery round")

    async def run(self) -> None:
        try:
            await self.run_rounds(self._deliver_due)
        finally:
            if self._client is not None:
                await self._client.aclose()

    def _client_for_round(self) -> httpx.AsyncClient:
        # Made when the first webhook is due, not at start: an HTTP client
        # loads the system's certificates (a fifth of a second), which a
        # server that takes no simulated payment never needs.
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _due(self) -> tuple[list[SimWebhook], float]:
        now = utcnow()
        query = (
            select(SimWebhook)
            .where(SimWebhook.delivered_at == None)  # noqa: E711
            .where(col(SimWebhook.next_attempt_at) <= now)
            .order_by(col(SimWebhook.id))
            .limit(BATCH)
        )
        # Several processes may send (PostgreSQL, SQLite's workers); each
        # takes a lease on its rows.
        rows = (
            lease_due(self._db, query, now + timedelta(seconds=LEASE_SECONDS))
            if self._db.shared
            else None
        )
        with self._db.read() as session:
            if rows is None:
                rows = list(session.exec(query).all())
            upcoming = session.exec(
                select(SimWebhook.next_attempt_at)
                .where(SimWebhook.delivered_at == None)  # noqa: E711
                .where(col(SimWebhook.next_attempt_at) > now)
                .order_by(col(SimWebhook.next_attempt_at))
                .limit(1)
            ).first()
        wait = (upcoming - now).total_seconds() if upcoming is not None else 5.0
        return rows, max(0.01, min(wait, 5.0))

    async def _deliver_due(self) -> float:
        # Database work runs in a worker thread: a lock wait must not stall the loop.
        rows, wait = await in_thread(self._due)
        if not rows:
            return wait
        client = self._client_for_round()
        results = await asyncio.gather(*(self._post(client, row) for row in rows))
        await in_thread(partial(self._record, rows, results))
        # More may be due right away (a full batch); otherwise wait for the next.
        return 0.0 if len(rows) == BATCH else wait

    def _record(self, rows: list[SimWebhook], results: list[str | None]) -> None:
        now = utcnow()
        with self._db.write_session() as session:
            for row, error in zip(rows, results, strict=True):
                if error is None:
                    values: dict[str, object] = {
                        "delivered_at": now,
                        "last_error": None,
                    }
                else:
                    attempts = row.attempts + 1
                    delay = min(
                        self._base_delay * 2 ** (attempts - 1), MAX_DELAY_SECONDS
                    )
                    delay *= random.uniform(0.5, 1.0)
                    values = {
                        "attempts": attempts,
                        "last_error": error[:500],
                        "next_attempt_at": now + timedelta(seconds=delay),
                    }
                    log.warning(
                        "webhook delivery failed",
                        extra={
                            "event_id": row.event_id,
                            "attempts": attempts,
                            "error": error,
                        },
                    )
                session.execute(
                    update(SimWebhook)
                    .where(col(SimWebhook.id) == row.id)
                    .values(**values)
                )
            session.commit()

    async def _post(self, client: httpx.AsyncClient, row: SimWebhook) -> str | None:
        body = row.body.encode()
        headers = {
            "Content-Type": "application/json",
            "CareForAll-Signature": sign(self._secret, body),
        }
        if not tracing.enabled():
            return await self._send(client, body, headers)
        # Continue the trace of the payment call that owes this webhook.
        with tracing.span(
            f"provider webhook {_event_type(row.body)}",
            parent=tracing.context_from(row.trace_context),
            kind=SpanKind.CLIENT,
            attributes={
                "careforall.webhook.event_id": row.event_id,
                "careforall.webhook.attempt": row.attempts + 1,
            },
        ) as span:
            traceparent = tracing.traceparent()
            if traceparent is not None:
                headers["traceparent"] = traceparent
            error = await self._send(client, body, headers)
            if error is not None:
                tracing.fail(span, error)
            return error

    async def _send(
        self, client: httpx.AsyncClient, body: bytes, headers: dict[str, str]
    ) -> str | None:
        import httpx  # loaded with the client (_client_for_round)

        try:
            response = await client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"


def _event_type(body: str) -> str:
    try:
        kind = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return "unknown"
    return kind if isinstance(kind, str) else "unknown"

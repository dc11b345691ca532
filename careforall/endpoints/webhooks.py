"""POST /webhooks/payments: signed provider events, applied once per event id.

`refused` and `log_request` answer and log the requests that change nothing,
for `/webhooks/stripe` (`endpoints/stripe_webhooks.py`) too.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse

from careforall import metrics
from careforall.domain.errors import ServiceBusy
from careforall.payments.signature import SignatureError, verify
from careforall.runtime import Runtime
from careforall.services import webhook_log
from careforall.services.payments import (
    EVENT_TARGETS,
    ProviderEvent,
    WebhookRejected,
    apply_provider_event,
)
from careforall.services.webhook_log import SAMPLED, WebhookEntry, WebhookOutcome

log = logging.getLogger("careforall.webhooks")


class LoggedEvent(Protocol):
    """What the webhook log keeps of an event (any provider's)."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def pledge_id(self) -> str | None: ...


MAX_BODY_BYTES = 64 * 1024


def _refuse(
    status: int,
    outcome: str,
    reason: str,
    *,
    logged: bool = True,
    suppressed: int | None = None,
) -> JSONResponse:
    """Count the refusal and answer it; `logged`: with a log line (a sampled
    one says how many of its reason went unlogged since the last)."""
    metrics.WEBHOOKS.labels(outcome).inc()
    if logged:
        extra: dict[str, object] = {
            "outcome": outcome,
            "reason": reason,
            "status": status,
        }
        if suppressed is not None:
            extra["suppressed"] = suppressed
        log.warning("webhook refused", extra=extra)
    return JSONResponse({"received": False, "error": reason}, status_code=status)


async def log_request(
    runtime: Runtime,
    status: int,
    outcome: WebhookOutcome,
    reason: str | None,
    event: LoggedEvent | None = None,
    *,
    recent: int | None = None,
) -> None:
    """Keep a webhook log row for a request that changed nothing.

    Processed events are logged in the commit that applies them. The answer to
    the provider never depends on this write succeeding.
    """
    entry = WebhookEntry(
        outcome=outcome,
        status_code=status,
        reason=reason,
        event_id=event.id if event else None,
        type=event.type if event else None,
        pledge_id=event.pledge_id if event else None,
    )
    try:
        await runtime.write_grouped(webhook_log.record, entry=entry, recent=recent)
    except Exception:
        log.exception("webhook log not written", extra={"outcome": entry.outcome})


async def refused(
    runtime: Runtime,
    status: int,
    outcome: WebhookOutcome,
    reason: str,
    event: LoggedEvent | None = None,
) -> JSONResponse:
    """Answer a refusal, logged in full, or sampled when nothing in the request
    can be trusted (anyone can send those: a flood must not cost a row each)."""
    if outcome not in SAMPLED:
        await log_request(runtime, status, outcome, reason, event)
        return _refuse(status, outcome.value, reason)
    sample = runtime.refusals.note(outcome, reason)
    if sample is None:
        return _refuse(status, outcome.value, reason, logged=False)
    await log_request(
        runtime, status, outcome, sample.reason(reason), event, recent=sample.recent
    )
    return _refuse(status, outcome.value, reason, suppressed=sample.suppressed)


def _parse(body: bytes) -> ProviderEvent | str:
    """The event, or why the body is not one."""
    try:
        data: Any = json.loads(body)
        # A lone surrogate escape ("\ud800") decodes, but no database stores it.
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return "body has a \\u escape that is no Unicode character"
    except (ValueError, UnicodeDecodeError):
        return "body is not JSON"
    if not isinstance(data, dict):
        return "body is not a JSON object"
    event_id, kind, payload = data.get("id"), data.get("type"), data.get("data")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 120:
        return "id must be a string of 1 to 120 characters"
    if not isinstance(kind, str):
        return "type must be a string"
    if not isinstance(payload, dict):
        return "data must be an object"
    pledge_id, amount, currency = (
        payload.get("pledgeId"),
        payload.get("amountCents"),
        payload.get("currency"),
    )
    if not isinstance(pledge_id, str) or len(pledge_id) > 100:
        return "data.pledgeId must be a string"
    if not isinstance(amount, int) or isinstance(amount, bool):
        return "data.amountCents must be an integer"
    if not isinstance(currency, str) or len(currency) > 10:
        return "data.currency must be a string"
    reason = payload.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
        return "data.reason must be a string of at most 200 characters"
    return ProviderEvent(
        id=event_id,
        type=kind,
        pledge_id=pledge_id,
        amount_cents=amount,
        currency=currency,
        reason=reason,
    )


async def payments_webhook(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return await refused(
            runtime, 413, WebhookOutcome.REJECTED_TOO_LARGE, "body is too large"
        )
    try:
        verify(
            runtime.webhook_secret, body, request.headers.get("careforall-signature")
        )
    except SignatureError as exc:
        metrics.WEBHOOK_SIGNATURE_FAILURES.labels(exc.kind).inc()
        return await refused(runtime, 400, WebhookOutcome.REJECTED_SIGNATURE, str(exc))
    event = _parse(body)
    if isinstance(event, str):
        return await refused(runtime, 400, WebhookOutcome.REJECTED_MALFORMED, event)
    if event.type not in EVENT_TARGETS:
        # Acknowledged so the provider stops sending it; it changes nothing.
        metrics.WEBHOOKS.labels("ignored").inc()
        await log_request(
            runtime, 200, WebhookOutcome.IGNORED, "event type not handled", event
        )
        return JSONResponse({"received": True, "duplicate": False, "ignored": True})
    try:
        duplicate = await runtime.write_grouped(apply_provider_event, event=event)
    except WebhookRejected as exc:
        return await refused(
            runtime, 422, WebhookOutcome.REJECTED_UNPROCESSABLE, str(exc), event
        )
    except ServiceBusy as busy:
        return busy_answer(busy)
    return await applied_answer(runtime, duplicate, event)


def busy_answer(busy: ServiceBusy) -> JSONResponse:
    """Nothing was applied; the provider retries a non-2xx answer later."""
    metrics.WEBHOOKS.labels("busy").inc()
    return JSONResponse(
        {"received": False, "error": busy.message},
        status_code=429,
        headers={"Retry-After": str(busy.retry_after_seconds)},
    )


async def applied_answer(runtime: Runtime, duplicate: bool, event: Any) -> JSONResponse:
    """An event applied now, or before (a duplicate, logged as one)."""
    metrics.WEBHOOKS.labels("duplicate" if duplicate else "processed").inc()
    if duplicate:
        await log_request(runtime, 200, WebhookOutcome.DUPLICATE, None, event)
    return JSONResponse({"received": True, "duplicate": duplicate})

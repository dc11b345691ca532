"""POST /webhooks/payments: signed provider events, applied once per event id."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from careforall import metrics
from careforall.payments.signature import SignatureError, verify
from careforall.services.payments import (
    EVENT_TARGETS,
    ProviderEvent,
    WebhookRejected,
    apply_provider_event,
)
from careforall.services.runtime import Runtime

log = logging.getLogger("careforall.webhooks")

MAX_BODY_BYTES = 64 * 1024


def _refuse(status: int, outcome: str, reason: str) -> JSONResponse:
    metrics.WEBHOOKS.labels(outcome).inc()
    log.warning(
        "webhook refused",
        extra={"outcome": outcome, "reason": reason, "status": status},
    )
    return JSONResponse({"received": False, "error": reason}, status_code=status)


def _parse(body: bytes) -> ProviderEvent | str:
    """The event, or why the body is not one."""
    try:
        data: Any = json.loads(body)
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
        return _refuse(413, "rejected_too_large", "body is too large")
    try:
        verify(
            runtime.webhook_secret, body, request.headers.get("careforall-signature")
        )
    except SignatureError as exc:
        return _refuse(400, "rejected_signature", str(exc))
    event = _parse(body)
    if isinstance(event, str):
        return _refuse(400, "rejected_malformed", event)
    if event.type not in EVENT_TARGETS:
        # Acknowledged so the provider stops sending it; it changes nothing.
        metrics.WEBHOOKS.labels("ignored").inc()
        return JSONResponse({"received": True, "duplicate": False, "ignored": True})
    try:
        duplicate = await runtime.write(
            apply_provider_event, runtime.uow(), event=event
        )
    except WebhookRejected as exc:
        return _refuse(422, "rejected_unprocessable", str(exc))
    metrics.WEBHOOKS.labels("duplicate" if duplicate else "processed").inc()
    return JSONResponse({"received": True, "duplicate": duplicate})

"""POST /webhooks/stripe: Stripe's signed events, applied once per event id.

The signature is checked by the official library (tolerance 300 s): a bad one
is 400 and changes nothing. Every other answer is 200 unless the database is
busy (429, which Stripe retries): an event not handled, a partial refund, an
event for a PaymentIntent no pledge of this installation made (the Stripe
account may serve a shop as well), and an amount or currency that is not the
pledge's (logged and alerted) would never apply however often Stripe sent
them, and Stripe retries a refusal for three days.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from careforall import metrics
from careforall.domain.errors import ServiceBusy
from careforall.endpoints.webhooks import (
    MAX_BODY_BYTES,
    applied_answer,
    busy_answer,
    log_request,
    refused,
)
from careforall.payments.stripe_events import BadSignature, StripeEvent, parse, verify
from careforall.runtime import Runtime
from careforall.services.payments import AmountMismatch, UnknownPledge
from careforall.services.stripe_payments import apply_stripe_event, record_mismatch
from careforall.services.webhook_log import WebhookOutcome


def _ignored(duplicate: bool = False) -> JSONResponse:
    return JSONResponse({"received": True, "duplicate": duplicate, "ignored": True})


async def _ignore(
    runtime: Runtime, reason: str, event: StripeEvent | None
) -> JSONResponse:
    metrics.WEBHOOKS.labels("ignored").inc()
    await log_request(runtime, 200, WebhookOutcome.IGNORED, reason, event)
    return _ignored()


async def stripe_webhook(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    config = runtime.settings.stripe
    if config is None:
        return JSONResponse({"error": "Stripe is not the payment provider"}, 404)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return await refused(
            runtime, 413, WebhookOutcome.REJECTED_TOO_LARGE, "body is too large"
        )
    try:
        verify(body, request.headers.get("stripe-signature"), config.webhook_secret)
    except BadSignature as exc:
        metrics.WEBHOOK_SIGNATURE_FAILURES.labels("mismatch").inc()
        return await refused(runtime, 400, WebhookOutcome.REJECTED_SIGNATURE, str(exc))
    event = parse(body)
    if isinstance(event, str):
        if event.startswith("ignored: "):
            return await _ignore(runtime, event.removeprefix("ignored: "), None)
        return await refused(runtime, 400, WebhookOutcome.REJECTED_MALFORMED, event)
    try:
        duplicate = await runtime.write_grouped(apply_stripe_event, event=event)
    except UnknownPledge:
        return await _ignore(runtime, "no pledge for this PaymentIntent", event)
    except AmountMismatch as exc:
        metrics.WEBHOOKS.labels("rejected_unprocessable").inc()
        await runtime.write(
            record_mismatch, runtime.uow(), event=event, reason=str(exc)
        )
        return _ignored()
    except ServiceBusy as busy:
        return busy_answer(busy)
    return await applied_answer(runtime, duplicate, event)

"""What every call to Stripe shares: its idempotency key, what counts as no
answer, and an authorization's outcome read from its PaymentIntent."""

from __future__ import annotations

import logging

import stripe

from careforall.payments.provider import ProviderResult, ProviderUnavailable

log = logging.getLogger("careforall.provider")

# No answer, or Stripe's own trouble: the call may have happened.
UNANSWERED = (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)


def idempotency_key(owner_id: str, step: str) -> str:
    """The key of one step of one pledge (or donor): the same on every retry."""
    return f"careforall:{owner_id}:{step}"


def unavailable(exc: stripe.StripeError) -> ProviderUnavailable:
    log.warning(
        "Stripe did not answer",
        extra={"error": type(exc).__name__, "status": exc.http_status},
    )
    return ProviderUnavailable(f"Stripe: {type(exc).__name__}: {exc.user_message}")


def result_of(intent: stripe.PaymentIntent) -> ProviderResult:
    """An authorization's outcome, from its PaymentIntent."""
    if intent.status in ("requires_capture", "succeeded", "processing"):
        return ProviderResult(approved=True)
    error = intent.last_payment_error
    reason = error.message if error is not None and error.message else None
    return ProviderResult(approved=False, reason=reason or "The payment was declined.")

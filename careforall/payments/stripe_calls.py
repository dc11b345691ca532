"""What every call to Stripe shares: the client (over httpx, with the
configured timeout, never retrying by itself), its idempotency key, what
counts as no answer, and an authorization's outcome read from its
PaymentIntent."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx
import stripe

from careforall import metrics
from careforall.payment_config import StripeConfig
from careforall.payments.provider import (
    ProviderResult,
    ProviderUnavailable,
    UnknownPaymentMethod,
)

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


# What the donor reads when their bank wanted to confirm a charge made while
# they were away (Stripe's `authentication_required`).
AUTHENTICATION_REQUIRED = (
    "Your bank asked you to confirm this payment, which it cannot do while "
    "you are away; update your card in My donations."
)


def authorize_intent(
    client: stripe.StripeClient,
    params: Any,
    *,
    pledge_id: str,
    payment_method: str,
    remember: Callable[[str, str], None],
) -> ProviderResult:
    """Create and confirm `pledge_id`'s PaymentIntent under its authorize key,
    remembering the intent (a declined one too). A decline, or a bank asking
    for an away donor's confirmation, is a refused result; a payment method
    Stripe does not know raises `UnknownPaymentMethod`."""
    options: Any = {"idempotency_key": idempotency_key(pledge_id, "authorize")}
    try:
        intent = client.v1.payment_intents.create(params, options)
    except stripe.CardError as declined:
        refused = declined.error.payment_intent if declined.error else None
        if refused is not None:
            remember(pledge_id, refused.id)
        if declined.code == "authentication_required":
            return ProviderResult(approved=False, reason=AUTHENTICATION_REQUIRED)
        return ProviderResult(approved=False, reason=declined.user_message)
    except stripe.InvalidRequestError as refused:
        if refused.param == "payment_method":
            raise UnknownPaymentMethod(payment_method) from None
        return ProviderResult(approved=False, reason=refused.user_message)
    except UNANSWERED as exc:
        raise unavailable(exc) from None
    remember(pledge_id, intent.id)
    return result_of(intent)


class HttpClient(stripe.HTTPClient):
    """The library's calls over httpx, with the configured timeout.

    The library's own httpx client posts the form as `data=<str>`, which httpx
    deprecates (a warning on every call); this one sends it as `content`.
    A timeout or a refused connection is the library's APIConnectionError.
    """

    name: ClassVar[str] = "careforall-httpx"

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._http = httpx.Client(timeout=timeout)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        call = _call_name(method, url)
        try:
            response = self._http.request(
                method, url, headers=dict(headers or {}), content=post_data or None
            )
        except httpx.HTTPError as exc:
            metrics.PROVIDER_CALLS.labels(call, "unanswered").inc()
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                f"No answer from Stripe: {type(exc).__name__}", should_retry=True
            ) from exc
        status = response.status_code
        outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
        metrics.PROVIDER_CALLS.labels(call, outcome).inc()
        # The library's stub says str; its own clients return the body's bytes.
        body: Any = response.content
        return body, response.status_code, response.headers

    def close(self) -> None:
        self._http.close()


def _call_name(method: str, url: str) -> str:
    """The API call a request makes, for the metric (never an object's id)."""
    parts = httpx.URL(url).path.strip("/").split("/")[1:]  # without "v1"
    if parts[:1] == ["payment_intents"]:
        if len(parts) == 1:
            return "create_payment_intent"
        if parts[-1] in ("capture", "cancel", "confirm", "search"):
            return parts[-1]
        return "retrieve_payment_intent"
    if parts == ["refunds"]:
        return "refund"
    if parts == ["checkout", "sessions"]:
        return "checkout"
    if parts == ["customers"]:
        return "create_customer"
    if parts == ["setup_intents"]:
        return "create_setup_intent"
    return "other"


def make_client(config: StripeConfig, http: stripe.HTTPClient) -> stripe.StripeClient:
    """A client of its own (the library's global settings stay untouched)."""
    addresses: Any = {"api": config.api_base} if config.api_base else None
    return stripe.StripeClient(
        config.secret_key,
        base_addresses=addresses,
        max_network_retries=0,
        http_client=http,
    )

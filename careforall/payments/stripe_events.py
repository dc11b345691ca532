"""Stripe's webhook events: the signature, checked by the library, and what
each handled event says about a pledge (contract-0.3.md, "Payments through
Stripe")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from careforall.domain.states import PledgeStatus

TOLERANCE_SECONDS = 300  # the library's default, as the contract says

# The events that move a pledge, and where to.
TARGETS = {
    "payment_intent.amount_capturable_updated": PledgeStatus.AUTHORIZED,
    "payment_intent.succeeded": PledgeStatus.CAPTURED,
    "payment_intent.payment_failed": PledgeStatus.FAILED,
    "payment_intent.canceled": PledgeStatus.FAILED,
    "charge.refunded": PledgeStatus.REFUNDED,
}
# Disputes move no pledge: they are shown to admins, and a lost one takes its
# amount out of what the pledge counts for.
DISPUTES = ("charge.dispute.created", "charge.dispute.closed")
HANDLED = (*TARGETS, *DISPUTES)
CANCELED = "The authorization was canceled before it was captured."


class BadSignature(ValueError):
    """The Stripe-Signature header does not sign this body with the secret."""


@dataclass(frozen=True)
class StripeEvent:
    """What CareForAll reads of one event; amounts in minor units, the
    currency upper case (Stripe writes it lower case)."""

    id: str
    type: str
    payment_intent_id: str
    pledge_id: str | None  # metadata.pledge_id, when the object carries it
    amount_cents: int
    currency: str
    amount_refunded: int = 0
    reason: str | None = None
    dispute_status: str | None = None  # a dispute's: needs_response, won, lost...

    @property
    def is_dispute(self) -> bool:
        return self.type in DISPUTES

    @property
    def target(self) -> PledgeStatus | None:
        """Where the event moves the pledge; None for a partial refund (which
        lowers what the pledge counts for, and does not end it) and for a
        dispute."""
        if self.is_dispute:
            return None
        if self.type == "charge.refunded" and self.amount_refunded < self.amount_cents:
            return None
        return TARGETS[self.type]


def verify(body: bytes, header: str | None, secret: str) -> None:
    """Raise BadSignature unless Stripe signed `body` within the tolerance."""
    # The library loads with the first event (a sixth of a second), not
    # with every server.
    import stripe

    try:
        payload = body.decode()
        stripe.WebhookSignature.verify_header(
            payload, header or "", secret, TOLERANCE_SECONDS
        )
    except (UnicodeDecodeError, stripe.SignatureVerificationError) as exc:
        raise BadSignature(str(exc) or "signature does not verify") from None
    except (IndexError, ValueError):
        # A header the library cannot even split ("t=abc", "v1" alone).
        raise BadSignature("malformed Stripe-Signature header") from None


def _text(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _amount(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse(body: bytes) -> StripeEvent | str:
    """A handled event; or, for anything else, why it is not one (an event
    type not handled says so with the prefix "ignored: ")."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(data, dict):
        return "body is not a JSON object"
    event_id, kind = _text(data.get("id"), 120), _text(data.get("type"), 100)
    if event_id is None or kind is None:
        return "id and type must be strings"
    if kind not in HANDLED:
        return f"ignored: {kind} is not handled"
    wrapper = data.get("data")
    obj = wrapper.get("object") if isinstance(wrapper, dict) else None
    if not isinstance(obj, dict):
        return "data.object must be an object"
    charge = kind.startswith("charge.")  # a Charge or a Dispute
    intent_id = _text(obj.get("payment_intent") if charge else obj.get("id"), 255)
    amount, currency = _amount(obj.get("amount")), _text(obj.get("currency"), 10)
    if intent_id is None or amount is None or currency is None:
        return "the object needs its PaymentIntent, amount and currency"
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    return StripeEvent(
        id=event_id,
        type=kind,
        payment_intent_id=intent_id,
        pledge_id=_text(metadata.get("pledge_id"), 100),
        amount_cents=amount,
        currency=currency.upper(),
        amount_refunded=_amount(obj.get("amount_refunded")) or 0,
        reason=_reason(kind, obj),
        dispute_status=_text(obj.get("status"), 30) if kind in DISPUTES else None,
    )


def _reason(kind: str, obj: dict[str, Any]) -> str | None:
    if kind == "payment_intent.canceled":
        return CANCELED
    error = obj.get("last_payment_error")
    if kind == "payment_intent.payment_failed" and isinstance(error, dict):
        message = error.get("message")
        return message[:200] if isinstance(message, str) else None
    return None

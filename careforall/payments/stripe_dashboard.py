"""Links into Stripe's dashboard, kept apart from the provider so that the
API's types do not load the Stripe library."""

from __future__ import annotations


def dashboard_url(intent_id: str, *, live: bool) -> str:
    """The PaymentIntent's page in Stripe's dashboard (test mode's for test keys)."""
    mode = "" if live else "test/"
    return f"https://dashboard.stripe.com/{mode}payments/{intent_id}"

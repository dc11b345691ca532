"""Payments taken on the provider's own page or SDK: the donor is sent to
Stripe Checkout (web), or a mobile app gets the PaymentIntent's client secret
for Stripe's payment sheet. Nothing changes here until the provider's
webhooks say how the payment went. A card for a recurring gift is saved on
the provider's page too (Checkout in setup mode)."""

from __future__ import annotations

from urllib.parse import quote

from careforall.domain.errors import BadUserInput, NotFound, ProviderBusy
from careforall.domain.rules import Principal, require_user
from careforall.models import Campaign, Pledge
from careforall.payments.provider import (
    HostedPayments,
    PaymentProvider,
    PaymentRefused,
    ProviderUnavailable,
)
from careforall.services.payments import donors_pending_pledge
from careforall.services.unit_of_work import UnitOfWork

NOT_HOSTED = "This server's payment provider takes no hosted payments."


def _hosted(provider: PaymentProvider) -> HostedPayments:
    if not isinstance(provider, HostedPayments):
        raise BadUserInput(NOT_HOSTED)
    return provider


def start_checkout(
    uow: UnitOfWork,
    *,
    provider: PaymentProvider,
    principal: Principal | None,
    pledge_id: str,
    public_url: str,
) -> str:
    """The donor's PENDING pledge: the address of the provider's page that
    takes the payment, and brings the donor back to the campaign's page."""
    pledge = donors_pending_pledge(uow, principal=principal, pledge_id=pledge_id)
    hosted = _hosted(provider)
    with uow.db.read() as session:
        campaign = session.get(Campaign, pledge.campaign_id)
    assert campaign is not None  # a foreign key guarantees it
    back = f"{public_url.rstrip('/')}/#/campaigns/{quote(campaign.id)}"
    try:
        return hosted.checkout_url(
            pledge_id=pledge.id,
            amount_cents=pledge.amount_cents,
            currency=pledge.currency,
            title=f"Donation to {campaign.title}",
            return_url=back,
        )
    except PaymentRefused as refused:
        raise BadUserInput(f"The payment provider refused: {refused}") from None
    except ProviderUnavailable:
        raise ProviderBusy() from None


def payment_sheet_secret(
    uow: UnitOfWork,
    *,
    provider: PaymentProvider,
    principal: Principal | None,
    pledge_id: str,
) -> str:
    """The donor's PENDING pledge: the client secret a mobile app confirms the
    payment with (the same PaymentIntent every time it is asked)."""
    pledge: Pledge = donors_pending_pledge(
        uow, principal=principal, pledge_id=pledge_id
    )
    hosted = _hosted(provider)
    try:
        return hosted.client_secret(
            pledge_id=pledge.id,
            amount_cents=pledge.amount_cents,
            currency=pledge.currency,
        )
    except PaymentRefused as refused:
        raise BadUserInput(f"The payment provider refused: {refused}") from None
    except ProviderUnavailable:
        raise ProviderBusy() from None


def start_card_setup(
    uow: UnitOfWork,
    *,
    provider: PaymentProvider,
    principal: Principal | None,
    campaign_id: str | None,
    public_url: str,
) -> str:
    """A signed-in donor: the address of the provider's page that saves a
    card for a recurring gift. It brings the donor back to the campaign's
    page (starting a gift) or to My donations (a new card for a gift), with
    `card_setup=<the page's session>`, to send as the gift's paymentMethod."""
    donor = require_user(principal)
    hosted = _hosted(provider)
    back = f"{public_url.rstrip('/')}/#/donations"
    if campaign_id is not None:
        with uow.db.read() as session:
            campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise NotFound("There is no campaign with that id.")
        back = f"{public_url.rstrip('/')}/#/campaigns/{quote(campaign.id)}"
    try:
        return hosted.card_setup_url(
            donor_id=donor.id, return_url=f"{back}?card_setup={{CHECKOUT_SESSION_ID}}"
        )
    except PaymentRefused as refused:
        raise BadUserInput(f"The payment provider refused: {refused}") from None
    except ProviderUnavailable:
        raise ProviderBusy() from None

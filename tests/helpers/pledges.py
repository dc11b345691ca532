"""Pledges made and moved through the services, as the API and the provider's
webhooks would."""

from __future__ import annotations

import uuid
from typing import Any

from careforall.db import Database
from careforall.domain.rules import Principal
from careforall.models import Campaign, Pledge
from careforall.services.payments import ProviderEvent, apply_provider_event
from careforall.services.pledges import PledgeData, create_pledge
from careforall.services.unit_of_work import UnitOfWork


def give(
    db: Database,
    donor: Principal,
    campaign: Campaign,
    amount: int,
    *,
    donor_name: str | None = "Dana",
    donor_email: str | None = None,
    campaign_updates: bool = False,
) -> str:
    data = PledgeData(
        campaign_id=campaign.id,
        amount_cents=amount,
        idempotency_key=uuid.uuid4().hex,
        donor_name=donor_name,
        donor_email=donor_email,
        campaign_updates=campaign_updates,
    )
    return create_pledge(UnitOfWork(db), principal=donor, data=data).id


def paid(
    db: Database, donor: Principal, campaign: Campaign, amount: int, **kw: Any
) -> str:
    """A pledge given (`kw` as `give` takes them) and captured, as the
    provider's webhook says."""
    pledge_id = give(db, donor, campaign, amount, **kw)
    provider_says(db, pledge_id, "captured")
    return pledge_id


def provider_says(
    db: Database, pledge_id: str, kind: str, reason: str | None = None
) -> None:
    """A provider webhook applied through the service (it writes the events)."""
    with db.read() as session:
        row = session.get(Pledge, pledge_id)
    assert row is not None
    apply_provider_event(
        UnitOfWork(db),
        event=ProviderEvent(
            id=f"evt_{uuid.uuid4().hex}",
            type=f"payment.{kind}",
            pledge_id=pledge_id,
            amount_cents=row.amount_cents,
            currency=row.currency,
            reason=reason,
        ),
    )

"""Payouts: money disbursed to the beneficiary (the hospital), recorded by an
admin and public on the campaign's page, and the figures beside them:
raised, refunded, paid out and held."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case
from sqlmodel import Session, col, func, select

from careforall.domain.clock import new_id, to_utc, utcnow
from careforall.domain.errors import BadUserInput
from careforall.domain.events import PayoutRecorded
from careforall.domain.money import format_money
from careforall.domain.rules import Principal, require_admin
from careforall.domain.states import PledgeStatus
from careforall.models import CampaignTotals, Payout, Pledge
from careforall.services import audit
from careforall.services.campaigns import locked_campaign
from careforall.services.unit_of_work import UnitOfWork

TEXT_LIMIT = 200
# A campaign page lists its latest payouts, at most this many.
PAYOUTS_SHOWN = 100
# A transfer dated a little ahead (another time zone, a value date) is fine;
# one far in the future is a typo.
FUTURE_SLACK = timedelta(days=1)


def _text(value: str, field: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= TEXT_LIMIT:
        raise BadUserInput(f"{field} must be 1 to {TEXT_LIMIT} characters long.")
    return value


def _paid_at(value: datetime | None) -> datetime:
    now = utcnow()
    if value is None:
        return now
    paid_at = to_utc(value)
    if paid_at > now + FUTURE_SLACK:
        raise BadUserInput("paidAt cannot be in the future.")
    return paid_at


def record_payout(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    campaign_id: str,
    amount_cents: int,
    recipient: str,
    reference: str,
    paid_at: datetime | None,
) -> Payout:
    """An admin records a disbursement (audited): positive, and never more
    than what was raised (net of refunds) less what was paid out already."""
    admin = require_admin(principal)
    recipient, reference = _text(recipient, "recipient"), _text(reference, "reference")
    when = _paid_at(paid_at)
    if amount_cents < 1:
        raise BadUserInput("amountCents must be a positive whole number.")
    with uow:
        campaign = locked_campaign(uow, admin, campaign_id, manage=True)
        totals = uow.session.get(CampaignTotals, campaign.id, with_for_update=True)
        raised = totals.raised_cents if totals is not None else 0
        held = raised - campaign.paid_out_cents
        if amount_cents > held:
            raise BadUserInput(
                f"amountCents is more than the campaign holds "
                f"({format_money(max(held, 0), campaign.currency)})."
            )
        payout = Payout(
            id=new_id("pay"),
            campaign_id=campaign.id,
            amount_cents=amount_cents,
            currency=campaign.currency,
            recipient=recipient,
            reference=reference,
            paid_at=when,
            recorded_by_user_id=admin.id,
        )
        campaign.paid_out_cents += amount_cents
        campaign.updated_at = utcnow()
        uow.session.add_all([payout, campaign])
        uow.emit(
            PayoutRecorded(
                campaign_id=campaign.id,
                payout_id=payout.id,
                amount_cents=amount_cents,
                currency=campaign.currency,
            )
        )
        audit.record(
            uow,
            actor=admin,
            action="record_payout",
            target_type="campaign",
            target_id=campaign.id,
            detail={"payout": payout.id, "amount_cents": amount_cents},
        )
        uow.commit()
    return payout


def payouts_of(
    session: Session, campaign_ids: Sequence[str]
) -> dict[str, list[Payout]]:
    """Each campaign's payouts, latest paid first (at most PAYOUTS_SHOWN)."""
    found: dict[str, list[Payout]] = {cid: [] for cid in campaign_ids}
    if not found:
        return found
    rows = session.exec(
        select(Payout)
        .where(col(Payout.campaign_id).in_(list(found)))
        .order_by(col(Payout.paid_at).desc(), col(Payout.id).desc())
    )
    for row in rows:
        if len(found[row.campaign_id]) < PAYOUTS_SHOWN:
            found[row.campaign_id].append(row)
    return found


def refunded_cents(session: Session, campaign_ids: Sequence[str]) -> dict[str, int]:
    """What was given back of each campaign's captured gifts: refunded pledges
    whole, and the partial refunds of pledges still CAPTURED."""
    found = dict.fromkeys(campaign_ids, 0)
    if not found:
        return found
    given_back = case(
        (col(Pledge.status) == PledgeStatus.REFUNDED.value, col(Pledge.amount_cents)),
        else_=col(Pledge.refunded_cents),
    )
    rows = session.exec(
        select(Pledge.campaign_id, func.sum(given_back))
        .where(col(Pledge.campaign_id).in_(list(found)))
        .where(
            col(Pledge.status).in_(
                [PledgeStatus.REFUNDED.value, PledgeStatus.CAPTURED.value]
            )
        )
        .group_by(col(Pledge.campaign_id))
    )
    for campaign_id, total in rows:
        found[campaign_id] = int(total or 0)
    return found

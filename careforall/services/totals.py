"""The totals read model: kept per event through the ledger, repaired by reconcile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import text, update
from sqlmodel import Session, col, func, select

from careforall.domain.clock import utcnow
from careforall.domain.events import TotalsReconciled
from careforall.domain.states import PledgeStatus, counts_in_totals
from careforall.models import CampaignTotals, Pledge, TotalsLedger
from careforall.services.unit_of_work import UnitOfWork


def settle_pledge(session: Session, pledge_id: str) -> str | None:
    """Make the pledge's share of its totals match its status, in the caller's
    transaction. Returns the campaign id when the totals changed.

    It reads the pledge's current status rather than trusting the event, so a
    repeated, late or reordered event converges on the same totals.
    """
    # Locked (PostgreSQL) so that two processes settling one pledge take turns.
    pledge = session.get(Pledge, pledge_id, with_for_update=True)
    if pledge is None:
        return None
    wanted = pledge.amount_cents if counts_in_totals(pledge.status) else 0
    entry = session.get(TotalsLedger, pledge_id)
    counted = entry.counted_cents if entry is not None else 0
    if wanted == counted:
        return None
    if entry is None:
        entry = TotalsLedger(pledge_id=pledge.id, campaign_id=pledge.campaign_id)
    entry.counted_cents = wanted
    session.add(entry)
    count_delta = (wanted > 0) - (counted > 0)
    session.execute(
        update(CampaignTotals)
        .where(col(CampaignTotals.campaign_id) == pledge.campaign_id)
        .values(
            raised_cents=CampaignTotals.raised_cents + (wanted - counted),
            pledge_count=CampaignTotals.pledge_count + count_delta,
            updated_at=utcnow(),
        )
    )
    return pledge.campaign_id


@dataclass(frozen=True)
class Drift:
    campaign_id: str
    raised_cents_was: int
    pledge_count_was: int
    raised_cents: int
    pledge_count: int


def reconcile(
    uow: UnitOfWork, *, before_commit: Callable[[list[Drift]], None] | None = None
) -> list[Drift]:
    """Recompute every campaign's totals from its CAPTURED pledges; repair drift.

    `before_commit` runs inside the transaction with the drifts found (the
    admin API and the command line write their audit row there).
    """
    captured = PledgeStatus.CAPTURED.value
    with uow:
        session = uow.session
        # PostgreSQL: no dispatcher settles a pledge meanwhile.
        uow.db.totals_lock(session, exclusive=True)
        # The ledger first, so events still in the outbox settle to no change.
        session.execute(
            text(
                "UPDATE totals_ledger SET counted_cents = COALESCE((SELECT CASE WHEN "
                "p.status = :captured THEN p.amount_cents ELSE 0 END FROM pledges p "
                "WHERE p.id = totals_ledger.pledge_id), 0) WHERE counted_cents != "
                "COALESCE((SELECT CASE WHEN p.status = :captured THEN p.amount_cents "
                "ELSE 0 END FROM pledges p WHERE p.id = totals_ledger.pledge_id), 0)"
            ),
            {"captured": captured},
        )
        session.execute(
            text(
                "INSERT INTO totals_ledger (pledge_id, campaign_id, counted_cents) "
                "SELECT p.id, p.campaign_id, p.amount_cents FROM pledges p "
                "WHERE p.status = :captured AND NOT EXISTS "
                "(SELECT 1 FROM totals_ledger l WHERE l.pledge_id = p.id)"
            ),
            {"captured": captured},
        )
        # Totals from the ledger just made, not from the pledges again: on
        # PostgreSQL a pledge may be captured between two statements, and its
        # event must then find the ledger and the totals alike.
        counted = col(TotalsLedger.counted_cents)
        sums = {
            campaign_id: (int(raised), int(count))
            for campaign_id, raised, count in session.exec(
                select(TotalsLedger.campaign_id, func.sum(counted), func.count())
                .where(counted > 0)
                .group_by(TotalsLedger.campaign_id)
            ).all()
        }
        drifts: list[Drift] = []
        for totals in session.exec(select(CampaignTotals)).all():
            raised, count = sums.get(totals.campaign_id, (0, 0))
            if (totals.raised_cents, totals.pledge_count) != (raised, count):
                drifts.append(
                    Drift(
                        campaign_id=totals.campaign_id,
                        raised_cents_was=totals.raised_cents,
                        pledge_count_was=totals.pledge_count,
                        raised_cents=raised,
                        pledge_count=count,
                    )
                )
                totals.raised_cents, totals.pledge_count = raised, count
                totals.updated_at = utcnow()
                session.add(totals)
                # Delivered by the dispatcher of whichever process serves the
                # campaign's subscribers (`careforall reconcile` is another one).
                uow.emit(
                    TotalsReconciled(
                        campaign_id=totals.campaign_id,
                        raised_cents=raised,
                        pledge_count=count,
                    )
                )
        if before_commit is not None:
            before_commit(drifts)
        uow.commit()
    return drifts


def totals_for(session: Session, campaign_ids: Sequence[str]) -> list[CampaignTotals]:
    if not campaign_ids:
        return []
    return list(
        session.exec(
            select(CampaignTotals).where(
                col(CampaignTotals.campaign_id).in_(campaign_ids)
            )
        ).all()
    )

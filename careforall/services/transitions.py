"""A pledge's status change, written one way whoever asks for it.

The donor's payment, an admin's capture or refund, auto-capture and the
provider's webhooks all lock the pledge, let the shared state machine say
which steps lead towards the status they want (`domain.states.advance`), and
write those steps here: a history row and an outbox event each, and the
pledge row itself, in the caller's transaction. These are the hottest writes
after createPledge, so they are Core statements compiled once (`Direct`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, select, update

from careforall.direct import Direct
from careforall.domain.clock import utcnow
from careforall.domain.events import PledgeStatusChanged
from careforall.domain.states import PledgeStatus, Step, advance
from careforall.models import Pledge, PledgeTransition, table_of
from careforall.services.unit_of_work import UnitOfWork

_PLEDGES = table_of(Pledge)
_RECORD_STEP = Direct(insert(table_of(PledgeTransition)))
# Locked (PostgreSQL) until the commit, so two moves of one pledge take turns.
_PLEDGE_TO_MOVE = Direct(
    select(
        _PLEDGES.c.id,
        _PLEDGES.c.campaign_id,
        _PLEDGES.c.amount_cents,
        _PLEDGES.c.currency,
        _PLEDGES.c.status,
        _PLEDGES.c.failure_reason,
    )
    .where(_PLEDGES.c.id == bindparam("pledge_id"))
    .with_for_update()
)
_MOVE_PLEDGE = Direct(
    update(_PLEDGES)
    # Not a column's name: UPDATE keeps those for its SET values.
    .where(_PLEDGES.c.id == bindparam("b_pledge_id"))
    .values(
        status=bindparam("status"),
        updated_at=bindparam("updated_at"),
        failure_reason=bindparam("failure_reason"),
    )
)


@dataclass
class MovingPledge:
    """What a status change reads of a pledge and the machine moves."""

    id: str
    campaign_id: str
    amount_cents: int
    currency: str
    status: str
    failure_reason: str | None


def pledge_to_move(uow: UnitOfWork, pledge_id: str) -> MovingPledge | None:
    """The pledge, locked until the caller's commit (None: no such pledge)."""
    found = _PLEDGE_TO_MOVE.first(uow.session.connection(), {"pledge_id": pledge_id})
    return None if found is None else MovingPledge(**found._asdict())


def move_pledge(
    uow: UnitOfWork,
    pledge: MovingPledge,
    target: PledgeStatus,
    *,
    source: str,
    failure_reason: str | None = None,
) -> list[Step]:
    """Move `pledge` towards `target` as far as the machine allows and write
    what that took (nothing when it is there already or past it).

    A move to FAILED keeps `failure_reason`, when one is given.
    """
    steps = advance(pledge, target, source=source, at=utcnow())
    if not steps:
        return steps
    if target == PledgeStatus.FAILED and failure_reason:
        pledge.failure_reason = failure_reason
    write_history(uow, pledge, steps)
    _MOVE_PLEDGE.run(
        uow.session.connection(),
        {
            "b_pledge_id": pledge.id,
            "status": pledge.status,
            "updated_at": steps[-1].at,
            "failure_reason": pledge.failure_reason,
        },
    )
    return steps


def write_history(uow: UnitOfWork, pledge: MovingPledge, steps: Sequence[Step]) -> None:
    """A history row and an outbox event for each step: one statement for the
    rows and one for the events, however many steps (a webhook's capture of a
    PENDING pledge takes two)."""
    if not steps:
        return
    _RECORD_STEP.run_many(
        uow.session.connection(),
        [
            {
                "pledge_id": pledge.id,
                "from_status": step.from_status.value,
                "to_status": step.to_status.value,
                "at": step.at,
                "source": step.source,
            }
            for step in steps
        ],
    )
    uow.emit_all(
        [
            PledgeStatusChanged(
                pledge_id=pledge.id,
                campaign_id=pledge.campaign_id,
                amount_cents=pledge.amount_cents,
                currency=pledge.currency,
                from_status=step.from_status.value,
                to_status=step.to_status.value,
                source=step.source,
            )
            for step in steps
        ]
    )


def record_creation(conn: Connection, pledge_id: str, *, at: datetime) -> None:
    """The first history row of a new pledge (no event: PledgeCreated says it)."""
    _RECORD_STEP.run(
        conn,
        {
            "pledge_id": pledge_id,
            "from_status": None,
            "to_status": PledgeStatus.PENDING.value,
            "at": at,
            "source": "api",
        },
    )

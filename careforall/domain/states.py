"""Pledge and campaign states, and the one shared machine that guards pledges.

The machine is built once at import with `model=None` and fired against any
object that has a `status` attribute, so ORM rows are never registered with it.
Clients move pledges one step at a time (`fire`); the payment provider's events
name a target state and imply the steps before it (`advance`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from transitions import EventData, Machine, MachineError

from careforall.domain.errors import InvalidTransition


class PledgeStatus(enum.StrEnum):
    PENDING = "PENDING"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    REFUNDED = "REFUNDED"
    FAILED = "FAILED"


class CampaignStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    CLOSED = "CLOSED"
    IN_REVIEW = "IN_REVIEW"
    REJECTED = "REJECTED"
    SUSPENDED = "SUSPENDED"


class Role(enum.StrEnum):
    DONOR = "DONOR"
    ADMIN = "ADMIN"


TERMINAL = frozenset({PledgeStatus.FAILED, PledgeStatus.REFUNDED})

# The main path of a successful payment; FAILED branches off its first two steps.
PATH = (
    PledgeStatus.PENDING,
    PledgeStatus.AUTHORIZED,
    PledgeStatus.CAPTURED,
    PledgeStatus.REFUNDED,
)

# trigger name -> the state it leads to
TRIGGER_FOR = {
    PledgeStatus.AUTHORIZED: "authorize",
    PledgeStatus.CAPTURED: "capture",
    PledgeStatus.REFUNDED: "refund",
    PledgeStatus.FAILED: "fail",
}


class HasStatus(Protocol):
    status: Any


@dataclass(frozen=True)
class Step:
    """One state change as it goes into a pledge's history."""

    from_status: PledgeStatus
    to_status: PledgeStatus
    source: str
    at: datetime


def _record_step(event: EventData) -> None:
    steps: list[Step] = event.kwargs["steps"]
    assert event.transition is not None and event.transition.dest is not None
    steps.append(
        Step(
            from_status=PledgeStatus(event.transition.source),
            to_status=PledgeStatus(event.transition.dest),
            source=event.kwargs["source"],
            at=event.kwargs["at"],
        )
    )


PLEDGE_MACHINE = Machine(
    model=None,
    states=PledgeStatus,
    initial=None,
    auto_transitions=False,
    send_event=True,
    model_attribute="status",
    after_state_change=_record_step,
    transitions=[
        {
            "trigger": "authorize",
            "source": PledgeStatus.PENDING,
            "dest": PledgeStatus.AUTHORIZED,
        },
        {
            "trigger": "capture",
            "source": PledgeStatus.AUTHORIZED,
            "dest": PledgeStatus.CAPTURED,
        },
        {
            "trigger": "refund",
            "source": PledgeStatus.CAPTURED,
            "dest": PledgeStatus.REFUNDED,
        },
        {
            "trigger": "fail",
            "source": [PledgeStatus.PENDING, PledgeStatus.AUTHORIZED],
            "dest": PledgeStatus.FAILED,
        },
    ],
)


def _trigger(row: HasStatus, trigger: str, source: str, at: datetime) -> list[Step]:
    steps: list[Step] = []
    PLEDGE_MACHINE.events[trigger].trigger(row, source=source, at=at, steps=steps)
    # The machine stores the enum member; keep the row's column a plain string.
    row.status = PledgeStatus(row.status).value
    return steps


def fire(row: HasStatus, target: PledgeStatus, *, source: str, at: datetime) -> Step:
    """A client's request for one move; a move the machine forbids is refused."""
    current = PledgeStatus(row.status)
    try:
        (step,) = _trigger(row, TRIGGER_FOR[target], source, at)
    except (MachineError, KeyError):
        raise InvalidTransition(
            f"A {current.value} pledge cannot become {target.value}."
        ) from None
    return step


def path_to(current: PledgeStatus, target: PledgeStatus) -> list[PledgeStatus]:
    """The states a provider event for `target` implies from `current`.

    Empty when the pledge has already passed `target` or its terminal state
    excludes it: such an event is late or repeated and changes nothing.
    """
    if current in TERMINAL or current == target:
        return []
    if target == PledgeStatus.FAILED:
        return (
            [target]
            if current in (PledgeStatus.PENDING, PledgeStatus.AUTHORIZED)
            else []
        )
    here, there = PATH.index(current), PATH.index(target)
    return list(PATH[here + 1 : there + 1]) if there > here else []


def advance(
    row: HasStatus, target: PledgeStatus, *, source: str, at: datetime
) -> list[Step]:
    """Apply a provider event: every missing step up to `target`, or nothing."""
    steps: list[Step] = []
    for state in path_to(PledgeStatus(row.status), target):
        steps.extend(_trigger(row, TRIGGER_FOR[state], source, at))
    return steps


def counts_in_totals(status: str) -> bool:
    """Totals count CAPTURED pledges only (a refund uncounts them)."""
    return status == PledgeStatus.CAPTURED


class CampaignAction(enum.StrEnum):
    """The mutation that asks for a campaign's move."""

    MANAGE = "manage"  # setCampaignStatus
    REVIEW = "review"  # reviewCampaign
    SUSPEND = "suspend"  # suspendCampaign


class Actor(enum.StrEnum):
    """Who may make a move: the organiser (or an admin), or an admin only."""

    OWNER = "owner"
    ADMIN = "admin"


_C = CampaignStatus
# Every move a campaign may make, by the action that asks for it, and who may.
# A review decides once (REJECTED and CLOSED are final); a suspension is
# lifted by an admin only, so an organiser cannot undo it.
CAMPAIGN_MOVES: dict[tuple[CampaignAction, CampaignStatus, CampaignStatus], Actor] = {
    (CampaignAction.MANAGE, _C.ACTIVE, _C.PAUSED): Actor.OWNER,
    (CampaignAction.MANAGE, _C.PAUSED, _C.ACTIVE): Actor.OWNER,
    (CampaignAction.MANAGE, _C.ACTIVE, _C.CLOSED): Actor.OWNER,
    (CampaignAction.MANAGE, _C.PAUSED, _C.CLOSED): Actor.OWNER,
    (CampaignAction.MANAGE, _C.IN_REVIEW, _C.CLOSED): Actor.OWNER,
    (CampaignAction.MANAGE, _C.SUSPENDED, _C.ACTIVE): Actor.ADMIN,
    (CampaignAction.MANAGE, _C.SUSPENDED, _C.CLOSED): Actor.ADMIN,
    (CampaignAction.REVIEW, _C.IN_REVIEW, _C.ACTIVE): Actor.ADMIN,
    (CampaignAction.REVIEW, _C.IN_REVIEW, _C.REJECTED): Actor.ADMIN,
    (CampaignAction.SUSPEND, _C.ACTIVE, _C.SUSPENDED): Actor.ADMIN,
    (CampaignAction.SUSPEND, _C.PAUSED, _C.SUSPENDED): Actor.ADMIN,
}

# Not yet (or never) approved: only the organiser and admins see these.
HIDDEN_FROM_PUBLIC = frozenset({CampaignStatus.IN_REVIEW, CampaignStatus.REJECTED})


def campaign_move(
    action: CampaignAction, current: CampaignStatus, target: CampaignStatus
) -> Actor | None:
    """Who may move a campaign from `current` to `target` by `action`; None
    when no one may."""
    return CAMPAIGN_MOVES.get((action, current, target))

"""Domain events: what happened, written to the outbox in the same commit.

Each event is a frozen dataclass; `EVENT_TYPES` maps the name stored in the
outbox row back to its class.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True)
class Event:
    name: ClassVar[str] = "Event"

    def to_json(self) -> str:
        # Every field is flat (text, numbers, a tuple of text), so the
        # instance's own dict is the payload: asdict's deep copy cost more
        # than the rest of writing the event.
        return json.dumps(vars(self), separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class CampaignCreated(Event):
    name: ClassVar[str] = "CampaignCreated"
    campaign_id: str
    owner_id: str


@dataclasses.dataclass(frozen=True)
class CampaignStatusChanged(Event):
    name: ClassVar[str] = "CampaignStatusChanged"
    campaign_id: str
    from_status: str
    to_status: str
    source: str


@dataclasses.dataclass(frozen=True)
class PledgeEvent(Event):
    """What every event of one pledge names (never written by itself)."""

    pledge_id: str
    campaign_id: str
    amount_cents: int
    currency: str


@dataclasses.dataclass(frozen=True)
class PledgeCreated(PledgeEvent):
    name: ClassVar[str] = "PledgeCreated"


@dataclasses.dataclass(frozen=True)
class PledgeStatusChanged(PledgeEvent):
    name: ClassVar[str] = "PledgeStatusChanged"
    from_status: str
    to_status: str
    source: str


@dataclasses.dataclass(frozen=True)
class PledgeAmountReduced(PledgeEvent):
    """A captured pledge counts for less: part of it was refunded (in the
    provider's dashboard), or a dispute about it was lost. It counts for its
    amount less `refunded_cents` (all partial refunds so far) and
    `dispute_lost_cents`."""

    name: ClassVar[str] = "PledgeAmountReduced"
    refunded_cents: int
    dispute_lost_cents: int


@dataclasses.dataclass(frozen=True)
class PledgesClaimed(Event):
    """An anonymous session's pledges moved to an account."""

    name: ClassVar[str] = "PledgesClaimed"
    user_id: str
    session_id: str
    pledge_ids: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TotalsReconciled(Event):
    """Reconcile repaired a campaign's totals (in the commit of the repair), so
    whichever process serves its subscribers pushes them the repaired totals."""

    name: ClassVar[str] = "TotalsReconciled"
    campaign_id: str
    raised_cents: int
    pledge_count: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        CampaignCreated,
        CampaignStatusChanged,
        PledgeCreated,
        PledgeStatusChanged,
        PledgeAmountReduced,
        PledgesClaimed,
        TotalsReconciled,
    )
}


def load_event(name: str, payload: str) -> Event:
    """Rebuild an event from its outbox row."""
    data: dict[str, Any] = json.loads(payload)
    cls = EVENT_TYPES[name]
    if cls is PledgesClaimed:
        data["pledge_ids"] = tuple(data["pledge_ids"])
    return cls(**data)

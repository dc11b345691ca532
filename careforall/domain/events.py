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
    # Nothing reacts to it once committed (no handler takes it): its outbox row
    # is the record of what happened, written already delivered, so the
    # dispatcher never loads, marks or commits it (for every new pledge, a
    # batch of its own). careforall/outbox/handlers.py refuses a handler for
    # such an event.
    record_only: ClassVar[bool] = False

    def to_json(self) -> str:
        # Every field is flat (text, numbers, a tuple of text), so the
        # instance's own dict is the payload: asdict's deep copy cost more
        # than the rest of writing the event.
        return json.dumps(vars(self), separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class CampaignCreated(Event):
    name: ClassVar[str] = "CampaignCreated"
    record_only: ClassVar[bool] = True
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
class CampaignReviewed(Event):
    """An admin approved, rejected or suspended a campaign: its organiser is
    told (`outcome` is the campaign's new status; `note` the admin's words)."""

    name: ClassVar[str] = "CampaignReviewed"
    campaign_id: str
    owner_id: str
    outcome: str
    note: str | None
    decided_at: str  # ISO 8601: with the campaign, names this one decision


@dataclasses.dataclass(frozen=True)
class CampaignEdited(Event):
    name: ClassVar[str] = "CampaignEdited"
    record_only: ClassVar[bool] = True
    campaign_id: str
    actor_id: str
    fields: str  # the changed fields' names, comma-separated


@dataclasses.dataclass(frozen=True)
class CampaignUpdatePosted(Event):
    """An organiser posted news: the donors who opted in are told."""

    name: ClassVar[str] = "CampaignUpdatePosted"
    campaign_id: str
    update_id: str


@dataclasses.dataclass(frozen=True)
class PayoutRecorded(Event):
    name: ClassVar[str] = "PayoutRecorded"
    record_only: ClassVar[bool] = True
    campaign_id: str
    payout_id: str
    amount_cents: int
    currency: str


@dataclasses.dataclass(frozen=True)
class CampaignReported(Event):
    name: ClassVar[str] = "CampaignReported"
    campaign_id: str
    report_id: str


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
    record_only: ClassVar[bool] = True


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
    record_only: ClassVar[bool] = True
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


@dataclasses.dataclass(frozen=True)
class AccountMailRequested(Event):
    """A mail about an account is due: a password reset (to whichever account
    has `address`, if one does), an address verification or the notice that
    the address changed (to the account `user_id`). The mail, and the token
    of its link, are written when the event is delivered: the request itself
    does the same work whether or not the address has an account."""

    name: ClassVar[str] = "AccountMailRequested"
    kind: str  # password_reset, email_verification, email_changed
    request_id: str  # one mail per request, however often delivered
    address: str
    user_id: str | None = None


@dataclasses.dataclass(frozen=True)
class RecurringDonationStopped(Event):
    """A plan stopped charging without its donor asking: PAUSED after its
    last retry was declined, or CANCELLED because its campaign closed or was
    suspended. The donor is told."""

    name: ClassVar[str] = "RecurringDonationStopped"
    plan_id: str
    donor_user_id: str
    campaign_id: str
    status: str  # PAUSED or CANCELLED
    reason: str  # declined, campaign_closed
    at: str  # ISO 8601: with the plan, names this one stop


@dataclasses.dataclass(frozen=True)
class PaymentCustomerErased(Event):
    """A deleted account's customer at the payment provider (Stripe's
    Customer, with the cards saved to it) is to be deleted there too; its
    row here went with the account."""

    name: ClassVar[str] = "PaymentCustomerErased"
    user_id: str
    customer_id: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        CampaignCreated,
        CampaignStatusChanged,
        CampaignReviewed,
        CampaignEdited,
        CampaignUpdatePosted,
        PayoutRecorded,
        CampaignReported,
        PledgeCreated,
        PledgeStatusChanged,
        PledgeAmountReduced,
        PledgesClaimed,
        TotalsReconciled,
        AccountMailRequested,
        RecurringDonationStopped,
        PaymentCustomerErased,
    )
}


def load_event(name: str, payload: str) -> Event:
    """Rebuild an event from its outbox row."""
    data: dict[str, Any] = json.loads(payload)
    cls = EVENT_TYPES[name]
    if cls is PledgesClaimed:
        data["pledge_ids"] = tuple(data["pledge_ids"])
    return cls(**data)

"""What each event triggers. Handlers are idempotent: delivery is at least once.

Two kinds, by how they touch the database:
- transactional handlers run inside the dispatcher's transaction, the one that
  also marks the event delivered, so their effect and that record commit
  together (the totals);
- side-effect handlers run first with transactions of their own (auto-capture
  calls the provider); a failure leaves the event to be retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlmodel import Session

from careforall.db import Database
from careforall.domain.events import (
    AccountMailRequested,
    CampaignReported,
    CampaignReviewed,
    CampaignStatusChanged,
    CampaignUpdatePosted,
    Event,
    PaymentCustomerErased,
    PledgeAmountReduced,
    PledgeStatusChanged,
    RecurringDonationStopped,
    TotalsReconciled,
)
from careforall.domain.states import CampaignStatus, PledgeStatus
from careforall.models import OutboxEvent
from careforall.payments.provider import (
    ErasesCustomers,
    PaymentProvider,
    ProviderUnavailable,
)
from careforall.services import (
    account_mails,
    alerts,
    campaign_notices,
    mails,
    notifications,
    organiser_mails,
    recurring,
    recurring_notices,
    review_mails,
    update_mails,
)
from careforall.services.payments import auto_capture
from careforall.services.pledges import current_statuses
from careforall.services.totals import settle_pledges
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings


@dataclass(frozen=True)
class HandlerContext:
    db: Database
    settings: Settings
    provider: PaymentProvider


# Every handler receives a batch's events of its type at once, in outbox
# order: a few statements per batch rather than per event. One that raises is
# called again with each event alone, so only the failing event is retried.
#
# A transactional handler writes with Core on the dispatcher's connection (the
# savepoint that undoes a failed call's writes is the connection's, which an
# ORM session would not see) and returns the campaigns whose totals it
# changed, each with the position of the event that changed them last.
TransactionalHandler = Callable[[Connection, Sequence[Event]], Mapping[str, int]]
# A side-effect handler returns the events (by position) whose effect failed,
# with the error: only those are retried, and the others are not run again
# (a provider is not asked twice in one pass).
SideEffectHandler = Callable[[HandlerContext, Sequence[Event]], Mapping[int, Exception]]


ConfiguredHandler = Callable[[Connection, Sequence[Event], Settings], Mapping[str, int]]


def transactional_handlers(
    ctx: HandlerContext, kind: type[Event]
) -> list[TransactionalHandler]:
    """Every transactional handler of events of `kind`, in order."""
    bound: list[TransactionalHandler] = []
    for handler in CONFIGURED_HANDLERS.get(kind, []):

        def call(
            conn: Connection,
            events: Sequence[Event],
            handler: ConfiguredHandler = handler,
        ) -> Mapping[str, int]:
            return handler(conn, events, ctx.settings)

        call.__name__ = handler.__name__
        bound.append(call)
    return [*TRANSACTIONAL_HANDLERS.get(kind, []), *bound]


def status_changes(events: Sequence[Event]) -> list[PledgeStatusChanged]:
    """A PledgeStatusChanged handler's batch, typed as such."""
    changes = [e for e in events if isinstance(e, PledgeStatusChanged)]
    assert len(changes) == len(events)
    return changes


def update_totals(conn: Connection, events: Sequence[Event]) -> Mapping[str, int]:
    """Settle the pledges' totals, then tell their donors and organisers: the
    notifications' goal check needs the totals as of each change."""
    changes = status_changes(events)
    settlement = settle_pledges(conn, [change.pledge_id for change in changes])
    notifications.notify_pledge_statuses(conn, changes, settlement)
    return settlement.changed


def settle_reductions(conn: Connection, events: Sequence[Event]) -> Mapping[str, int]:
    """A partial refund or a lost dispute lowers its campaign's totals:
    settled like a status change (the ledger makes a repeat change nothing)."""
    pledge_ids = []
    for event in events:
        assert isinstance(event, PledgeAmountReduced)
        pledge_ids.append(event.pledge_id)
    return settle_pledges(conn, pledge_ids).changed


def write_mails(
    conn: Connection, events: Sequence[Event], settings: Settings
) -> Mapping[str, int]:
    """The donors' receipts and notices, and the organisers' goal-reached
    mails and digest notes (after the totals handler: it reads the totals
    settled), each mail once per cause; sent later by the mail sender
    (`outbox/mailer.py`), outside this transaction."""
    changes = status_changes(events)
    mails.write_pledge_mails(conn, changes, settings)
    organiser_mails.write_organiser_mails(conn, changes, settings)
    return {}


def write_account_mails(
    conn: Connection, events: Sequence[Event], settings: Settings
) -> Mapping[str, int]:
    """Password reset, verification and address-change mails, with their
    links' tokens, once per request."""
    account_mails.write_account_mails(conn, events, settings)
    return {}


def write_review_mails(
    conn: Connection, events: Sequence[Event], settings: Settings
) -> Mapping[str, int]:
    """An admin's decision on a campaign: the organiser's mail, once per
    decision."""
    reviews = [e for e in events if isinstance(e, CampaignReviewed)]
    review_mails.write_review_mails(conn, reviews, settings)
    return {}


def mail_update(conn: Connection, events: Sequence[Event]) -> Mapping[str, int]:
    """An organiser's update: recorded to mail to the donors who asked, in
    batches by the periodic mail round (`services/update_mails.py`)."""
    posted = [e for e in events if isinstance(e, CampaignUpdatePosted)]
    update_mails.record_mailings(conn, posted)
    return {}


def queues_mail(events: Iterable[Event]) -> bool:
    """Whether delivering `events` may have queued mails (receipts, notices,
    the goal-reached mail, account and review mails), so the mail sender
    should look now."""
    return any(
        isinstance(event, AccountMailRequested | CampaignReviewed)
        or (
            isinstance(event, PledgeStatusChanged)
            and PledgeStatus(event.to_status) in mails.PLEDGE_MAILS
        )
        for event in events
    )


def leaves_mails(events: Iterable[Event]) -> bool:
    """Whether delivering `events` left mails for the periodic writer (a
    campaign update's), so it should write them now rather than next round."""
    return any(isinstance(event, CampaignUpdatePosted) for event in events)


def tell_organisers(conn: Connection, events: Sequence[Event]) -> Mapping[str, int]:
    """An admin's review or suspension: the organiser's notification."""
    reviews = [e for e in events if isinstance(e, CampaignReviewed)]
    campaign_notices.notify_reviews(conn, reviews)
    return {}


def tell_admins(conn: Connection, events: Sequence[Event]) -> Mapping[str, int]:
    """A campaign's first report: every admin's notification."""
    reports = [e for e in events if isinstance(e, CampaignReported)]
    campaign_notices.notify_reports(conn, reports)
    return {}


def push_reconciled_totals(
    conn: Connection, events: Sequence[Event]
) -> Mapping[str, int]:
    """Reconcile already repaired the totals: naming the campaigns is enough
    for the dispatcher to push them to their subscribers."""
    changed: dict[str, int] = {}
    for position, event in enumerate(events):
        assert isinstance(event, TotalsReconciled)
        changed[event.campaign_id] = position
    return changed


def on_dead_letter(
    session: Session, row: OutboxEvent, *, attempts: int, error: str
) -> None:
    """For the dispatcher, in the transaction that parks `row` as a dead letter
    after `attempts` tries: the admins hear of it (rate-limited) exactly when
    the parking commits."""
    assert row.id is not None
    alerts.notify_dead_letter(
        session, event_id=row.id, name=row.name, attempts=attempts, error=error
    )


def capture_after_authorization(
    ctx: HandlerContext, events: Sequence[Event]
) -> Mapping[int, Exception]:
    """Capture the pledges authorized, unless they have moved on already (one
    read for the batch: a webhook often captures before this runs). A pledge
    that is gone has nothing left to capture."""
    if not ctx.settings.auto_capture:
        return {}
    positions: dict[str, list[int]] = {}
    for position, change in enumerate(status_changes(events)):
        if change.to_status == PledgeStatus.AUTHORIZED:
            positions.setdefault(change.pledge_id, []).append(position)
    statuses = current_statuses(ctx.db, list(positions))
    failed: dict[int, Exception] = {}
    for pledge_id, at in positions.items():
        if statuses.get(pledge_id) != PledgeStatus.AUTHORIZED:
            continue
        try:
            auto_capture(UnitOfWork(ctx.db), provider=ctx.provider, pledge_id=pledge_id)
        except Exception as exc:  # the provider is away: retried with backoff
            failed.update(dict.fromkeys(at, exc))
    return failed


def tell_recurring_donors(
    conn: Connection, events: Sequence[Event], settings: Settings
) -> Mapping[str, int]:
    stopped = [e for e in events if isinstance(e, RecurringDonationStopped)]
    recurring_notices.tell_donors(conn, stopped, settings)
    return {}


# A campaign in one of these takes no donations again soon (or ever): its
# recurring gifts end. A PAUSED campaign keeps them; their charges wait.
_ENDS_PLANS = {CampaignStatus.CLOSED.value, CampaignStatus.SUSPENDED.value}


def end_recurring_plans(
    ctx: HandlerContext, events: Sequence[Event]
) -> Mapping[int, Exception]:
    """The plans of a campaign that closed or was suspended end (their donors
    are told through the event that says so); none the second time."""
    failed: dict[int, Exception] = {}
    for at, event in enumerate(events):
        if not isinstance(event, CampaignStatusChanged):
            continue
        if event.to_status not in _ENDS_PLANS:
            continue
        try:
            recurring.end_campaign_plans(
                UnitOfWork(ctx.db), campaign_id=event.campaign_id
            )
        except Exception as exc:  # the database is away: retried with backoff
            failed[at] = exc
    return failed


def erase_payment_customers(
    ctx: HandlerContext, events: Sequence[Event]
) -> Mapping[int, Exception]:
    """Delete, at the payment provider, the customers of deleted accounts. A
    provider that keeps none (Stripe is no longer configured) cannot: the
    event is retried, then parked as a dead letter that admins see."""
    failed: dict[int, Exception] = {}
    for at, event in enumerate(events):
        if not isinstance(event, PaymentCustomerErased):
            continue
        try:
            if not isinstance(ctx.provider, ErasesCustomers):
                raise ProviderUnavailable(
                    f"customer {event.customer_id} of a deleted account is still"
                    " at Stripe: configure Stripe again to delete it"
                )
            ctx.provider.erase_customer(event.customer_id)
        except Exception as exc:  # the provider is away: retried with backoff
            failed[at] = exc
    return failed


TRANSACTIONAL_HANDLERS: dict[type[Event], list[TransactionalHandler]] = {
    PledgeStatusChanged: [update_totals],
    PledgeAmountReduced: [settle_reductions],
    TotalsReconciled: [push_reconciled_totals],
    CampaignReviewed: [tell_organisers],
    CampaignReported: [tell_admins],
    CampaignUpdatePosted: [mail_update],
}
# Transactional handlers that read the app's settings (the organisation named
# in every mail): `transactional_handlers` binds them to the context.
CONFIGURED_HANDLERS: dict[type[Event], list[ConfiguredHandler]] = {
    PledgeStatusChanged: [write_mails],
    AccountMailRequested: [write_account_mails],
    CampaignReviewed: [write_review_mails],
    RecurringDonationStopped: [tell_recurring_donors],
}
SIDE_EFFECT_HANDLERS: dict[type[Event], list[SideEffectHandler]] = {
    PledgeStatusChanged: [capture_after_authorization],
    CampaignStatusChanged: [end_recurring_plans],
    PaymentCustomerErased: [erase_payment_customers],
}


def refuse_record_only(*registries: Mapping[type[Event], object]) -> None:
    """A handler for a record-only event would never run: its rows are written
    delivered (careforall/domain/events.py). Refused when this module loads."""
    for registry in registries:
        for kind in registry:
            if kind.record_only:
                raise TypeError(
                    f"{kind.name} is record-only (written delivered): "
                    "no handler would see it"
                )


refuse_record_only(TRANSACTIONAL_HANDLERS, CONFIGURED_HANDLERS, SIDE_EFFECT_HANDLERS)

# Event names whose delivery has side effects (run before the write lock).
_SIDE_EFFECT_NAMES = frozenset(kind.name for kind in SIDE_EFFECT_HANDLERS)


def has_side_effects(name: str) -> bool:
    """Whether an outbox row of this event name runs side-effect handlers."""
    return name in _SIDE_EFFECT_NAMES

"""Notifications: their kinds, who hears of what, and the words they say.

Pure: the services decide when to notify and whom; this module only names
the kinds and writes each one's title and body.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from careforall.domain.states import CampaignStatus, PledgeStatus

TITLE_LIMIT = 200
BODY_LIMIT = 1000


class NotificationKind(enum.StrEnum):
    # to a pledge's donor
    PAYMENT_CAPTURED = "PAYMENT_CAPTURED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    PAYMENT_REFUNDED = "PAYMENT_REFUNDED"
    # to a recurring gift's donor
    RECURRING_PAUSED = "RECURRING_PAUSED"
    RECURRING_ENDED = "RECURRING_ENDED"
    # to a campaign's organiser
    DONATION_RECEIVED = "DONATION_RECEIVED"
    GOAL_REACHED = "GOAL_REACHED"
    CAMPAIGN_APPROVED = "CAMPAIGN_APPROVED"
    CAMPAIGN_REJECTED = "CAMPAIGN_REJECTED"
    CAMPAIGN_SUSPENDED = "CAMPAIGN_SUSPENDED"
    # to every admin
    CAMPAIGN_REPORTED = "CAMPAIGN_REPORTED"
    DEAD_LETTER = "DEAD_LETTER"
    WEBHOOKS_REJECTED = "WEBHOOKS_REJECTED"
    PAYMENT_DISPUTED = "PAYMENT_DISPUTED"


# The pledge states a donor hears about, and the kind each one is.
DONOR_KINDS = {
    PledgeStatus.CAPTURED: NotificationKind.PAYMENT_CAPTURED,
    PledgeStatus.FAILED: NotificationKind.PAYMENT_FAILED,
    PledgeStatus.REFUNDED: NotificationKind.PAYMENT_REFUNDED,
}


@dataclass(frozen=True)
class Message:
    title: str
    body: str

    def clipped(self) -> Message:
        return Message(self.title[:TITLE_LIMIT], self.body[:BODY_LIMIT])


def donor_message(
    kind: NotificationKind,
    *,
    amount: str,
    campaign_title: str,
    failure_reason: str | None = None,
) -> Message:
    """What a donor reads when their payment is captured, declined or refunded."""
    gift = f"Your donation of {amount} to “{campaign_title}”"
    if kind is NotificationKind.PAYMENT_CAPTURED:
        return Message("Your donation was received", f"{gift} was paid. Thank you!")
    if kind is NotificationKind.PAYMENT_FAILED:
        reason = (failure_reason or "the card was declined").rstrip(".")
        return Message(
            "Your payment did not go through",
            f"{gift} was not paid: {reason}. Nothing was charged; you can try "
            "again with another card.",
        )
    if kind is NotificationKind.PAYMENT_REFUNDED:
        return Message(
            "Your donation was refunded",
            f"{gift} was refunded: the money goes back to your card.",
        )
    raise ValueError(f"{kind} is not a donor's notification")


def recurring_stopped(
    kind: NotificationKind, *, amount: str, campaign_title: str
) -> Message:
    """What a donor reads when their recurring gift stops without their asking:
    PAUSED after its retries were declined, or ended with its campaign."""
    gift = f"Your recurring gift of {amount} to “{campaign_title}”"
    if kind is NotificationKind.RECURRING_PAUSED:
        return Message(
            "Your recurring gift is paused",
            f"{gift} is paused: the card was declined four times. Update the "
            "card in My donations and resume it; nothing more is charged until "
            "then.",
        )
    if kind is NotificationKind.RECURRING_ENDED:
        return Message(
            "Your recurring gift has ended",
            f"{gift} has ended: the campaign no longer takes donations. Nothing "
            "more is charged; your past gifts stay with the campaign.",
        )
    raise ValueError(f"{kind} is not a recurring gift's notification")


def donation_received(
    *, amount: str, campaign_title: str, donor_name: str | None
) -> Message:
    who = donor_name or "Someone"
    return Message(
        "New donation", f"{who} gave {amount} to “{campaign_title}”. Thank them!"
    )


def goal_reached(*, raised: str, goal: str, campaign_title: str) -> Message:
    return Message(
        "Your campaign reached its goal",
        f"“{campaign_title}” has raised {raised}, reaching its goal of {goal}.",
    )


# A review's outcome (the campaign's new status) and the kind its organiser gets.
REVIEW_KINDS = {
    CampaignStatus.ACTIVE: NotificationKind.CAMPAIGN_APPROVED,
    CampaignStatus.REJECTED: NotificationKind.CAMPAIGN_REJECTED,
    CampaignStatus.SUSPENDED: NotificationKind.CAMPAIGN_SUSPENDED,
}


def campaign_reviewed(
    kind: NotificationKind, *, campaign_title: str, note: str | None
) -> Message:
    """What an organiser reads when an admin approves, rejects or suspends."""
    why = f" The reviewer said: {note}" if note else ""
    if kind is NotificationKind.CAMPAIGN_APPROVED:
        return Message(
            "Your campaign is live",
            f"“{campaign_title}” was approved: it is public and takes donations.{why}",
        )
    if kind is NotificationKind.CAMPAIGN_REJECTED:
        return Message(
            "Your campaign was not approved",
            f"“{campaign_title}” was not approved and stays hidden.{why}",
        )
    if kind is NotificationKind.CAMPAIGN_SUSPENDED:
        return Message(
            "Your campaign was suspended",
            f"“{campaign_title}” was suspended and takes no donations until an "
            f"admin lifts the suspension.{why}",
        )
    raise ValueError(f"{kind} is not a review's notification")


def campaign_reported(*, campaign_title: str) -> Message:
    """What admins read when a campaign is reported the first time."""
    return Message(
        "A campaign was reported",
        f"Someone reported “{campaign_title}”. Read the reports on the admin "
        "page and suspend the campaign if they are right.",
    )


def dead_letter(
    *, event_id: int, name: str, attempts: int, error: str, suppressed: int
) -> Message:
    more = (
        f" {suppressed} more event{'s were' if suppressed != 1 else ' was'} parked "
        "since the last alert."
        if suppressed
        else ""
    )
    return Message(
        "An event was parked as a dead letter",
        f"Outbox event #{event_id} ({name}) failed {attempts} time"
        f"{'s' if attempts != 1 else ''} and was parked: {error[:300]}.{more} "
        "Replay it from the admin page once the cause is fixed.",
    )


_REJECTION_REASONS = {
    "rejected_signature": "a signature that does not verify",
    "rejected_malformed": "a body that is not a provider event",
    "rejected_unprocessable": "an unknown pledge or a wrong amount",
    "rejected_too_large": "a body that is too large",
}

_SAMPLED_REJECTIONS = ("rejected_signature", "rejected_too_large")


def webhooks_rejected(
    *, outcome: str, count: int, window_minutes: int, every_minutes: int
) -> Message:
    reason = _REJECTION_REASONS.get(outcome, outcome.replace("_", " "))
    hint = (
        " Check that CAREFORALL_WEBHOOK_SECRET is the provider's secret, or "
        "whether someone is sending forged events."
        if outcome == "rejected_signature"
        else ""
    )
    # Refusals of unverified requests are sampled, not logged one row each.
    logged = (
        "keeps a sample of them, each saying how many were left out"
        if outcome in _SAMPLED_REJECTIONS
        else "has each one"
    )
    return Message(
        "Payment webhooks are being rejected",
        f"At least {count} requests to /webhooks/payments within {window_minutes} "
        f"minutes were refused for {reason}.{hint} The webhook log on the admin "
        f"page {logged}. (This alert comes at most once every {every_minutes} "
        "minutes.)",
    )


def payment_mismatch(
    *, provider: str, event_id: str, pledge_id: str, detail: str, suppressed: int
) -> Message:
    more = (
        f" {suppressed} more such event{'s' if suppressed != 1 else ''} came since "
        "the last alert."
        if suppressed
        else ""
    )
    return Message(
        "A payment event did not match its pledge",
        f"{provider} sent event {event_id} for pledge {pledge_id} with {detail}. "
        "It was not applied: the pledge keeps its status and the totals are "
        f"unchanged. Compare the payment in {provider}'s dashboard with the "
        f"pledge, and settle it by hand.{more}",
    )


def dispute(*, pledge_id: str, amount: str, status: str, closed: bool) -> Message:
    """What admins read when a donor disputes a payment, and when it closes."""
    said = status.replace("_", " ")
    if not closed:
        return Message(
            "A donor disputed a payment",
            f"The payment of pledge {pledge_id} ({amount}) is disputed ({said}). "
            "Answer the dispute in the payment provider's dashboard before its "
            "deadline; the pledge still counts until the dispute is lost.",
        )
    lost = (
        f" The campaign's totals no longer count {amount}." if status == "lost" else ""
    )
    return Message(
        f"A dispute was closed: {said}",
        f"The dispute about pledge {pledge_id} ({amount}) was closed: {said}.{lost}",
    )

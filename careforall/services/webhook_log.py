"""The webhook log: one row per request to the payment webhook, with its outcome.

A processed event's row is written in the commit that applies it (see
`services.payments.apply_provider_event`), so "processed" in the log means the
effect committed. Every other outcome changed nothing and gets a small
transaction of its own. Neither the raw body nor the signature is ever kept.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import insert
from sqlmodel import Session

from careforall.direct import Direct
from careforall.domain.clock import utcnow
from careforall.models import WebhookLog, table_of
from careforall.services import alerts
from careforall.services.unit_of_work import UnitOfWork


class WebhookOutcome(enum.StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED_SIGNATURE = "rejected_signature"
    REJECTED_MALFORMED = "rejected_malformed"
    REJECTED_UNPROCESSABLE = "rejected_unprocessable"
    REJECTED_TOO_LARGE = "rejected_too_large"


REJECTED = tuple(o.value for o in WebhookOutcome if o.value.startswith("rejected"))


@dataclass(frozen=True)
class WebhookEntry:
    """What the log keeps of one request."""

    outcome: WebhookOutcome
    status_code: int
    event_id: str | None = None
    type: str | None = None
    pledge_id: str | None = None
    reason: str | None = None

    def to_values(self) -> dict[str, object]:
        """The log row's columns."""
        return {
            "received_at": utcnow(),
            "outcome": self.outcome.value,
            "status_code": self.status_code,
            "event_id": _clip(self.event_id, 120),
            "type": _clip(self.type, 60),
            "pledge_id": _clip(self.pledge_id, 100),
            "reason": _clip(self.reason, 200),
        }


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


_INSERT = Direct(insert(table_of(WebhookLog)))


def add(session: Session, entry: WebhookEntry) -> None:
    """Add the entry to the caller's transaction (one Core INSERT: every
    webhook request writes one)."""
    _INSERT.run(session.connection(), entry.to_values())


def record(uow: UnitOfWork, *, entry: WebhookEntry) -> None:
    """Write the entry in a transaction of its own (outcomes that changed nothing).

    A refusal may also raise the admins' alert (rate-limited, same commit).
    """
    with uow:
        add(uow.session, entry)
        if entry.outcome.value in REJECTED:
            alerts.watch_webhook_rejections(uow.session, outcome=entry.outcome.value)
        uow.commit()

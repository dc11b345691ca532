"""The webhook log: a row per request to the payment webhook, with its outcome.

A processed event's row is written in the commit that applies it (see
`services.payments.apply_provider_event`), so "processed" in the log means the
effect committed. Every other outcome changed nothing and gets a small
transaction of its own. Neither the raw body nor the signature is ever kept.

Requests refused before anything in them is trusted (a signature that does
not verify, a body too large to check) are *sampled*: anyone can send them,
so a flood of forgeries must not cost a row each. `RefusalSampler` counts
them in memory and lets at most one row per reason per `SAMPLE_EVERY_SECONDS`
through, saying how many were left out since the last; Prometheus counts every
one (`careforall_webhooks_received_total`).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
# Refused before the sender is known to hold the secret: sampled, not logged
# one row each. (A malformed or unprocessable event was signed: logged.)
SAMPLED = frozenset(
    {WebhookOutcome.REJECTED_SIGNATURE, WebhookOutcome.REJECTED_TOO_LARGE}
)
LOGGED_REJECTED = tuple(o for o in REJECTED if o not in SAMPLED)
# At most one row (and one log line) per reason this often, per process.
SAMPLE_EVERY_SECONDS = 60.0
_MINUTE = 60.0
_HOUR_MINUTES = 60


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


def record(uow: UnitOfWork, *, entry: WebhookEntry, recent: int | None = None) -> None:
    """Write the entry in a transaction of its own (outcomes that changed nothing).

    A refusal may also raise the admins' alert (rate-limited, same commit).
    `recent` is how many refusals of its kind came within the alert's window
    when they are counted in memory (sampled outcomes) rather than in rows.
    """
    with uow:
        add(uow.session, entry)
        if entry.outcome.value in REJECTED:
            alerts.watch_webhook_rejections(
                uow.session, outcome=entry.outcome.value, recent=recent
            )
        uow.commit()


@dataclass(frozen=True)
class Sample:
    """A sampled refusal to log: how many of its reason were left out since the
    last row, and how many of its outcome came within the alert's window."""

    suppressed: int
    recent: int

    def reason(self, reason: str) -> str:
        """The row's reason, with the count left out since the last row."""
        if not self.suppressed:
            return reason
        return f"{reason} (+{self.suppressed} more not logged since the last row)"


@dataclass
class _Counts:
    by_minute: dict[int, int] = field(default_factory=dict)
    alert_checked: float | None = None


class RefusalSampler:
    """In-memory counts of the sampled refusals of one process, and which of
    them get a row: the first of a reason, then at most one per `every`
    seconds, plus one when a burst reaches the admins' alert threshold (so the
    alert is judged at once, not a minute later). Thread-safe."""

    def __init__(
        self,
        every: float = SAMPLE_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every = every
        self.clock = clock
        self._lock = threading.Lock()
        self._last_row: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._counts: dict[str, _Counts] = {}

    def note(self, outcome: WebhookOutcome, reason: str) -> Sample | None:
        """Count one refusal; a Sample when it should be logged, else None."""
        now = self.clock()
        minute = int(now // _MINUTE)
        key = (outcome.value, reason)
        window = int(alerts.WEBHOOK_WINDOW.total_seconds() // _MINUTE)
        with self._lock:
            counts = self._counts.setdefault(outcome.value, _Counts())
            counts.by_minute[minute] = counts.by_minute.get(minute, 0) + 1
            for old in [m for m in counts.by_minute if m <= minute - _HOUR_MINUTES]:
                del counts.by_minute[old]
            recent = sum(n for m, n in counts.by_minute.items() if m > minute - window)
            last = self._last_row.get(key)
            due = last is None or now - last >= self.every
            alert_due = recent >= alerts.WEBHOOK_REJECTIONS and (
                counts.alert_checked is None
                or now - counts.alert_checked
                >= alerts.WEBHOOK_ALERT_EVERY.total_seconds()
            )
            if not (due or alert_due):
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            if alert_due:
                counts.alert_checked = now
            self._last_row[key] = now
            return Sample(suppressed=self._suppressed.pop(key, 0), recent=recent)

    def last_hour(self) -> int:
        """Sampled refusals counted by this process in about the last hour
        (by whole minutes)."""
        minute = int(self.clock() // _MINUTE)
        with self._lock:
            return sum(
                n
                for counts in self._counts.values()
                for m, n in counts.by_minute.items()
                if m > minute - _HOUR_MINUTES
            )

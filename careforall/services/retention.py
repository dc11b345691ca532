"""Retention: rows that only record finished work are deleted once they are old.

What goes, each after its own number of days: outbox events delivered
(`done`), webhook log rows, the simulated provider's delivered webhooks, and
sent mails, except receipts (tax records, kept however old) and goal-reached
mails (one per campaign: the row is what keeps it from being sent again).
What always stays: outbox events still pending and dead letters, the audit
log, pledges and their history, the totals ledger, and `webhook_events` (the
dedupe keys of provider events, one small row per applied event).
A run also deletes the files of campaign images that were replaced a day
or more ago (`images.sweep_unused_images`).

A run works in batches: a read finds at most `batch_size` ids through an
index, then a short write transaction deletes them by primary key (checking
again that each is still finished and old), so it never holds the write lock
for long. The newest row of each table is never deleted: SQLite gives a new
row max(id) + 1, so an emptied table would hand out old ids again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Delete, delete
from sqlmodel import SQLModel, col, func, select
from sqlmodel.sql.expression import SelectOfScalar

from careforall import metrics
from careforall.domain.clock import utcnow
from careforall.media import MediaStore
from careforall.models import Mail, OutboxEvent, SimWebhook, WebhookLog
from careforall.services import outbox
from careforall.services.images import sweep_unused_images
from careforall.services.mails import MailStatus
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings

log = logging.getLogger("careforall.retention")

DEFAULT_BATCH_SIZE = 500
# Between batches, writers waiting in this process go first.
YIELD_TIMEOUT_S = 0.25


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep each table's finished rows; 0 keeps them forever."""

    outbox_days: float = 30
    webhook_log_days: float = 90
    sim_webhooks_days: float = 30
    mails_days: float = 365

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            outbox_days=settings.retention_outbox_days,
            webhook_log_days=settings.retention_webhook_log_days,
            sim_webhooks_days=settings.retention_sim_webhooks_days,
            mails_days=settings.retention_mails_days,
        )

    def days(self) -> dict[str, float]:
        """Days to keep, by table name."""
        return {
            "outbox_events": self.outbox_days,
            "webhook_log": self.webhook_log_days,
            "sim_webhooks": self.sim_webhooks_days,
            "mails": self.mails_days,
        }

    @property
    def enabled(self) -> bool:
        return any(days > 0 for days in self.days().values())


@dataclass
class PruneResult:
    deleted: dict[str, int] = field(default_factory=dict)  # rows, by table
    seconds: float = 0.0
    stopped: bool = False  # asked to stop before it was done
    files_deleted: int = 0  # stored files of replaced campaign images

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _no_more(cutoff: datetime, in_delete: bool) -> list[ColumnElement[bool]]:
    return []


# Mails kept however old: receipts are tax records; a goal-reached mail's row
# is what makes it once per campaign.
KEPT_MAIL_KINDS = ("receipt", "goal_reached")


def _sent_mail(cutoff: datetime, in_delete: bool) -> list[ColumnElement[bool]]:
    return [
        col(Mail.status) == MailStatus.SENT.value,
        col(Mail.kind).not_in(KEPT_MAIL_KINDS),
    ]


@dataclass(frozen=True)
class _Table:
    """A table's old finished rows: `age` (an indexed time) before the cutoff,
    and whatever else `finished` says (asked for the find and for the delete)."""

    name: str
    model: type[SQLModel]
    id: Any
    age: Any
    finished: Callable[[datetime, bool], list[ColumnElement[bool]]] = _no_more

    def newest(self) -> SelectOfScalar[Any]:
        return select(func.max(self.id))

    def find(self, cutoff: datetime, limit: int) -> SelectOfScalar[Any]:
        """Up to `limit` ids, oldest first, through the index on `age`."""
        return (
            select(self.id)
            .where(self.age < cutoff, *self.finished(cutoff, False))
            .order_by(self.age)
            .limit(limit)
        )

    def delete(self, cutoff: datetime, ids: Sequence[int]) -> Delete:
        """Those ids, if still old and finished (found by primary key)."""
        return delete(self.model).where(
            self.id.in_(ids), self.age < cutoff, *self.finished(cutoff, True)
        )


TABLES = (
    # available_at <= processed_at, so the index (status, available_at, id)
    # narrows the search to old delivered events.
    _Table(
        "outbox_events",
        OutboxEvent,
        col(OutboxEvent.id),
        col(OutboxEvent.available_at),
        outbox.delivered_before,
    ),
    _Table("webhook_log", WebhookLog, col(WebhookLog.id), col(WebhookLog.received_at)),
    # A webhook still owed has delivered_at NULL, which no comparison matches.
    _Table(
        "sim_webhooks", SimWebhook, col(SimWebhook.id), col(SimWebhook.delivered_at)
    ),
    # Through the index (status, kind, sent_at): never a scan of the receipts.
    _Table("mails", Mail, col(Mail.id), col(Mail.sent_at), _sent_mail),
)


def prune(
    uow: UnitOfWork,
    *,
    policy: RetentionPolicy,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
    media: MediaStore | None = None,
) -> PruneResult:
    """Delete old finished rows, one short transaction per batch, and the
    files of replaced images in `media`; logs the run.

    `should_stop` is asked before each batch (the server's shutdown).
    """
    began = time.monotonic()
    now = now or utcnow()
    days = policy.days()
    result = PruneResult()
    for table in TABLES:
        if days[table.name] <= 0 or result.stopped:
            result.deleted[table.name] = 0
            continue
        cutoff = now - timedelta(days=days[table.name])
        result.deleted[table.name] = _prune_table(
            uow, table, cutoff, max(1, batch_size), should_stop, result
        )
    if media is not None and not result.stopped:
        result.files_deleted = sweep_unused_images(uow, media, now=now)
    result.seconds = time.monotonic() - began
    log.info(
        "retention run",
        extra={
            "deleted": result.deleted,
            "total_deleted": result.total,
            "files_deleted": result.files_deleted,
            "keep_days": days,
            "stopped": result.stopped,
            "duration_s": round(result.seconds, 3),
        },
    )
    return result


def _prune_table(
    uow: UnitOfWork,
    table: _Table,
    cutoff: datetime,
    batch_size: int,
    should_stop: Callable[[], bool],
    result: PruneResult,
) -> int:
    with uow.db.read() as session:
        newest = session.exec(table.newest()).one()
    deleted = 0
    while True:
        if should_stop():
            result.stopped = True
            break
        with uow.db.read() as session:
            found = list(session.exec(table.find(cutoff, batch_size + 1)).all())
        ids = [i for i in found if i is not None and i != newest][:batch_size]
        if not ids:
            break
        with uow:
            rows = uow.session.execute(table.delete(cutoff, ids))
            uow.commit()
        count = int(rows.rowcount)  # type: ignore[attr-defined]
        deleted += count
        metrics.RETENTION_PRUNED.labels(table.name).inc(count)
        # A batch that deleted nothing found rows that changed meanwhile.
        if len(found) <= batch_size or count == 0:
            break
        uow.db.write_waiters.wait_until_none(YIELD_TIMEOUT_S)
    return deleted

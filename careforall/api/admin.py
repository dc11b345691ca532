"""The admin API: stats, pledge search, dead letters, webhook and audit logs,
replays and reconcile. Admins only: the services refuse everyone else."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from careforall import models
from careforall.api.mapping import from_attributes, optional_id
from careforall.api.pagination import Connection
from careforall.api.resolvers import read_as_caller, read_page, write
from careforall.api.types import Info, Pledge
from careforall.domain.states import PledgeStatus
from careforall.services import admin, mail_queue
from careforall.services.mails import MailStatus
from careforall.services.webhook_log import WebhookOutcome

strawberry.enum(WebhookOutcome)
strawberry.enum(MailStatus)


def _json(text: str) -> JSON:
    try:
        value: JSON = json.loads(text)
    except ValueError:
        return JSON(text)
    return value


# --- types ---------------------------------------------------------------------


@strawberry.type(description="Money in one currency (never summed across them).")
class CurrencyAmount:
    currency: str
    amount_cents: int

    @classmethod
    def many(cls, rows: Sequence[admin.CurrencyAmount]) -> list[CurrencyAmount]:
        return [from_attributes(cls, r) for r in rows]


@strawberry.type
class PledgeStatusStats:
    status: PledgeStatus
    count: int
    amounts: list[CurrencyAmount]


@strawberry.type
class AdminStats:
    at: datetime
    pledges_by_status: list[PledgeStatusStats]
    raised_today: list[CurrencyAmount] = strawberry.field(
        description="What pledges captured since midnight UTC still contribute."
    )
    raised_total: list[CurrencyAmount] = strawberry.field(
        description="The sum of all CAPTURED pledges."
    )
    outbox_pending: int
    outbox_lag_seconds: float = strawberry.field(
        description="Age of the oldest pending outbox event; 0 when none waits."
    )
    dead_letters: int
    webhook_rejects_last_hour: int = strawberry.field(
        description="Webhook requests refused in about the last hour: the "
        "logged ones, plus those refused for their signature or size as counted "
        "by the process answering (since it started; each process counts its "
        "own). careforall_webhooks_received_total counts every one."
    )
    dead_mails: int = strawberry.field(
        description="Mails refused for good by the SMTP server, waiting for an "
        "admin to replay them (adminMails(status: DEAD))."
    )

    @classmethod
    def from_stats(cls, s: admin.Stats) -> AdminStats:
        return from_attributes(
            cls,
            s,
            pledges_by_status=[
                from_attributes(
                    PledgeStatusStats, x, amounts=CurrencyAmount.many(x.amounts)
                )
                for x in s.pledges_by_status
            ],
            raised_today=CurrencyAmount.many(s.raised_today),
            raised_total=CurrencyAmount.many(s.raised_total),
        )


@strawberry.type(description="An outbox event parked after its last delivery try.")
class DeadLetter:
    id: strawberry.ID
    name: str
    payload: JSON
    attempts: int
    last_error: str | None
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.OutboxEvent) -> DeadLetter:
        return from_attributes(
            cls, row, id=strawberry.ID(str(row.id)), payload=_json(row.payload)
        )


@strawberry.type(
    description="A mail to someone: queued, sent, dead (refused for good) or "
    "kept (no SMTP server configured)."
)
class AdminMail:
    id: strawberry.ID
    kind: str
    to: str
    subject: str
    text: str
    html: str
    status: MailStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def from_model(cls, row: models.Mail) -> AdminMail:
        return from_attributes(
            cls,
            row,
            id=strawberry.ID(str(row.id)),
            to=row.to_address,
            status=MailStatus(row.status),
        )


@strawberry.type(description="One request to /webhooks/payments and its answer.")
class WebhookLogEntry:
    id: strawberry.ID
    received_at: datetime
    outcome: WebhookOutcome
    reason: str | None
    status_code: int
    event_id: str | None
    type: str | None
    pledge_id: strawberry.ID | None

    @classmethod
    def from_model(cls, row: models.WebhookLog) -> WebhookLogEntry:
        return from_attributes(
            cls,
            row,
            id=strawberry.ID(str(row.id)),
            outcome=WebhookOutcome(row.outcome),
            pledge_id=optional_id(row.pledge_id),
        )


@strawberry.type(description="The admin who did something.")
class AuditActor:
    id: strawberry.ID
    name: str
    email: str


@strawberry.type(description="An admin action: who did what to which record, when.")
class AuditEntry:
    id: strawberry.ID
    at: datetime
    actor_id: strawberry.ID | None = strawberry.field(
        description="The admin; null for the command line."
    )
    action: str
    target_type: str
    target_id: str
    detail: JSON

    @classmethod
    def from_model(cls, row: models.AuditLog) -> AuditEntry:
        return from_attributes(
            cls,
            row,
            id=strawberry.ID(str(row.id)),
            actor_id=optional_id(row.actor_user_id),
            detail=_json(row.detail),
        )

    @strawberry.field
    async def actor(self, info: Info) -> AuditActor | None:
        if self.actor_id is None:
            return None
        user = await info.context.loaders.users.load(str(self.actor_id))
        if user is None:
            return None
        return from_attributes(AuditActor, user)


@strawberry.type(description="A campaign whose kept totals differed from its pledges.")
class TotalsDrift:
    campaign_id: strawberry.ID
    raised_cents_was: int
    pledge_count_was: int
    raised_cents: int
    pledge_count: int


# --- resolvers -----------------------------------------------------------------


@strawberry.type
class AdminQuery:
    @strawberry.field(description="Admin.")
    async def admin_stats(self, info: Info) -> AdminStats:
        refusals = info.context.runtime.refusals
        stats = await read_as_caller(
            info,
            lambda session, principal: admin.stats(
                session, principal=principal, sampled_rejects=refusals.last_hour()
            ),
        )
        return AdminStats.from_stats(stats)

    @strawberry.field(
        description="Admin. Any donor's pledges, newest first; "
        "createdFrom <= createdAt < createdTo."
    )
    async def admin_pledges(
        self,
        info: Info,
        campaign_id: strawberry.ID | None = None,
        status: PledgeStatus | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[Pledge]:
        flt = admin.PledgeFilter(
            campaign_id=str(campaign_id) if campaign_id is not None else None,
            status=status,
            created_from=created_from,
            created_to=created_to,
        )
        return await read_page(
            info, admin.search_pledges, Pledge.from_model, first, after, filter=flt
        )

    @strawberry.field(description="Admin. Newest first.")
    async def dead_letters(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[DeadLetter]:
        return await read_page(
            info, admin.dead_letters, DeadLetter.from_model, first, after
        )

    @strawberry.field(
        description="Admin. Every mail, newest first; `status` keeps one kind."
    )
    async def admin_mails(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        status: MailStatus | None = None,
    ) -> Connection[AdminMail]:
        return await read_page(
            info, mail_queue.mails, AdminMail.from_model, first, after, status=status
        )

    @strawberry.field(description="Admin. Newest first.")
    async def webhook_log(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        outcome: WebhookOutcome | None = None,
    ) -> Connection[WebhookLogEntry]:
        return await read_page(
            info,
            admin.webhook_log,
            WebhookLogEntry.from_model,
            first,
            after,
            outcome=outcome,
        )

    @strawberry.field(description="Admin. Newest first.")
    async def audit_log(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[AuditEntry]:
        return await read_page(
            info, admin.audit_log, AuditEntry.from_model, first, after
        )


@strawberry.type
class AdminMutation:
    @strawberry.mutation(
        description="Admin. Deliver a dead letter again; 0 if it is no longer dead."
    )
    async def replay_dead_letter(self, info: Info, id: strawberry.ID) -> int:
        return await write(info, admin.replay_dead_letter, event_id=str(id))

    @strawberry.mutation(description="Admin. Deliver every dead letter again.")
    async def replay_all_dead_letters(self, info: Info) -> int:
        return await write(info, admin.replay_all_dead_letters)

    @strawberry.mutation(
        description="Admin. Send a dead or kept mail again; 0 if it is queued "
        "or sent already."
    )
    async def replay_mail(self, info: Info, id: strawberry.ID) -> int:
        return await write(info, mail_queue.replay_mail, mail_id=str(id))

    @strawberry.mutation(
        description="Admin. Recompute totals from pledges; returns what was repaired."
    )
    async def reconcile_totals(self, info: Info) -> list[TotalsDrift]:
        # Subscribers get the repaired totals from the dispatcher (the repair
        # commits a TotalsReconciled event per campaign).
        result = await write(info, admin.reconcile_totals)
        return [from_attributes(TotalsDrift, d) for d in result.drifts]

"""GraphQL output types, each built from its row with `from_model`: the fields
a row has under the same name are copied, the rest converted or computed."""

from __future__ import annotations

from datetime import datetime

import strawberry

from careforall import models
from careforall.api.context import Context
from careforall.api.mapping import from_attributes
from careforall.api.pagination import Connection, connection, page_size
from careforall.concurrency import in_thread
from careforall.domain import states
from careforall.domain.recurring import RecurringInterval, RecurringStatus
from careforall.domain.rules import may_manage_campaign
from careforall.domain.search import CampaignSort
from careforall.domain.states import CampaignStatus, PledgeStatus, Role
from careforall.payments.stripe_dashboard import dashboard_url
from careforall.services import pledges as pledge_service
from careforall.services import recurring as recurring_service
from careforall.services.campaigns import accepting_pledges
from careforall.services.images import image_srcset, image_url
from careforall.services.totals import TotalsFigures

# The domain's enums are the GraphQL enums (registered in place).
for _enum in (
    Role,
    CampaignStatus,
    PledgeStatus,
    CampaignSort,
    RecurringInterval,
    RecurringStatus,
):
    strawberry.enum(_enum)

Info = strawberry.Info[Context, None]


@strawberry.type(description="A pledge's payment at the payment provider.")
class PledgePayment:
    provider: str = strawberry.field(description="`simulated` or `stripe`.")
    payment_intent_id: str | None = strawberry.field(
        default=None,
        description="Stripe: the PaymentIntent that pays the pledge (none until "
        "the donor starts paying).",
    )
    dashboard_url: str | None = strawberry.field(
        default=None,
        description="Stripe: the PaymentIntent's page in Stripe's dashboard.",
    )


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    name: str
    role: Role
    created_at: datetime
    email_verified: bool = strawberry.field(
        description="The owner opened a verification link sent to this address."
    )

    @classmethod
    def from_model(cls, row: models.User) -> User:
        return from_attributes(cls, row, role=states.Role(row.role))


@strawberry.type(description="What anyone may see of a person.")
class PublicProfile:
    id: strawberry.ID
    name: str


@strawberry.type
class AuthPayload:
    token: str
    user: User | None
    anonymous: bool


@strawberry.type
class CampaignTotals:
    campaign_id: strawberry.ID
    raised_cents: int
    pledge_count: int
    updated_at: datetime

    @classmethod
    def from_model(cls, row: TotalsFigures) -> CampaignTotals:
        # Written out: this answers every campaignTotals query and every push
        # to a subscriber (a third of from_attributes' cost).
        return cls(
            campaign_id=strawberry.ID(row.campaign_id),
            raised_cents=row.raised_cents,
            pledge_count=row.pledge_count,
            updated_at=row.updated_at,
        )


@strawberry.type(
    description="A captured donation as anyone may see it: no donor identity."
)
class PublicDonation:
    donor_name: str | None = strawberry.field(
        description="Only when the donor gave one; show null as anonymous."
    )
    amount_cents: int
    currency: str
    message: str | None
    created_at: datetime


@strawberry.type(description="Money disbursed to the beneficiary, e.g. the hospital.")
class Payout:
    id: strawberry.ID
    amount_cents: int
    currency: str
    recipient: str = strawberry.field(description="e.g. the hospital paid")
    reference: str = strawberry.field(description="invoice or transfer reference")
    paid_at: datetime

    @classmethod
    def from_model(cls, row: models.Payout) -> Payout:
        return from_attributes(cls, row)


@strawberry.type(description="News an organiser posted on their campaign.")
class CampaignUpdate:
    id: strawberry.ID
    title: str
    body: str
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.CampaignUpdate) -> CampaignUpdate:
        return from_attributes(cls, row)


@strawberry.type
class Campaign:
    id: strawberry.ID
    title: str
    description: str
    category: str
    goal_cents: int
    currency: str
    status: CampaignStatus
    ends_at: datetime | None
    created_at: datetime
    accepting_pledges: bool = strawberry.field(
        description="True while the campaign takes donations (ACTIVE and not ended)."
    )
    row: strawberry.Private[models.Campaign]

    @classmethod
    def from_model(cls, row: models.Campaign) -> Campaign:
        return from_attributes(
            cls,
            row,
            status=states.CampaignStatus(row.status),
            accepting_pledges=accepting_pledges(row),
            row=row,
        )

    @strawberry.field(
        description="The admin's reason on REJECTED or SUSPENDED; owner and "
        "admins only (null to others)."
    )
    async def review_note(self, info: Info) -> str | None:
        if self.row.review_note is None:
            return None
        context = info.context
        context.answer_is_personal()
        principal = await in_thread(lambda: context.principal)
        if principal is None or not may_manage_campaign(principal, self.row):
            return None
        return self.row.review_note

    @strawberry.field(
        description="Why an admin suspended it, for everyone to read; null "
        "unless SUSPENDED."
    )
    def suspension_note(self) -> str | None:
        if self.row.status != CampaignStatus.SUSPENDED:
            return None
        return self.row.review_note

    @strawberry.field(
        description="The organiser: never a User, an email is not public."
    )
    async def owner(self, info: Info) -> PublicProfile:
        user = await info.context.loaders.users.load(self.row.owner_id)
        name = user.name if user is not None else "Former user"
        return PublicProfile(id=strawberry.ID(self.row.owner_id), name=name)

    @strawberry.field
    async def totals(self, info: Info) -> CampaignTotals:
        row = await info.context.loaders.totals.load(self.row.id)
        if row is None:  # created before its totals row: count as empty
            row = TotalsFigures(self.row.id, 0, 0, self.row.created_at)
        return CampaignTotals.from_model(row)

    @strawberry.field(
        description="The cover image, 800 pixels wide: a path on this server "
        "(`/media/...`); null until the organiser uploads one."
    )
    def image_url(self) -> str | None:
        key = self.row.image_key
        return image_url(key) if key else None

    @strawberry.field(
        description="The cover image in every width kept, as an HTML `srcset` "
        "(`/media/...-320.jpg 320w, ...`); null without an image."
    )
    def image_srcset(self) -> str | None:
        key = self.row.image_key
        return image_srcset(key) if key else None

    @strawberry.field(description="What was disbursed to the beneficiary so far.")
    def paid_out_cents(self) -> int:
        return self.row.paid_out_cents

    @strawberry.field(description="Its payouts, latest paid first (the latest 100).")
    async def payouts(self, info: Info) -> list[Payout]:
        rows = await info.context.loaders.payouts.load(self.row.id)
        return [Payout.from_model(r) for r in rows]

    @strawberry.field(description="What its refunded donations came to.")
    async def refunded_cents(self, info: Info) -> int:
        return await info.context.loaders.refunded.load(self.row.id)

    @strawberry.field(
        description="Raised (net of refunds) less paid out: what the platform "
        "holds for the beneficiary (never below 0)."
    )
    async def held_cents(self, info: Info) -> int:
        totals = await info.context.loaders.totals.load(self.row.id)
        raised = totals.raised_cents if totals is not None else 0
        return max(raised - self.row.paid_out_cents, 0)

    @strawberry.field(description="Its organiser's updates, newest first.")
    async def updates(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[CampaignUpdate]:
        key = self.row.id, page_size(first), after
        page = await info.context.loaders.updates.load(key)
        return connection(page, CampaignUpdate.from_model)

    @strawberry.field(
        description="Its latest CAPTURED donations, newest first (first: 1 to 50)."
    )
    async def recent_donations(
        self, info: Info, first: int = 10
    ) -> list[PublicDonation]:
        key = self.row.id, pledge_service.check_recent_first(first)
        rows = await info.context.loaders.recent_donations.load(key)
        return [from_attributes(PublicDonation, r) for r in rows]


@strawberry.type
class PledgeTransition:
    from_status: PledgeStatus | None
    to_status: PledgeStatus
    at: datetime
    source: str

    @classmethod
    def from_model(cls, row: models.PledgeTransition) -> PledgeTransition:
        return from_attributes(
            cls,
            row,
            from_status=states.PledgeStatus(row.from_status)
            if row.from_status
            else None,
            to_status=states.PledgeStatus(row.to_status),
        )


@strawberry.type
class Pledge:
    id: strawberry.ID
    amount_cents: int
    currency: str
    status: PledgeStatus
    idempotency_key: str
    donor_name: str | None
    message: str | None
    failure_reason: str | None = strawberry.field(
        description="Why the payment failed, in words a donor understands."
    )
    refunded_cents: int = strawberry.field(
        description="Given back by partial refunds so far (made in the payment "
        "provider's dashboard); while CAPTURED, the campaign's totals count "
        "amountCents less this. A whole refund makes the pledge REFUNDED."
    )
    dispute_status: str | None = strawberry.field(
        description="The payment provider's status of a dispute about the "
        "payment (needs_response, under_review, won, lost...); null without one. "
        "A lost dispute takes its amount out of the campaign's totals."
    )
    created_at: datetime
    updated_at: datetime
    receipt_number: str | None = strawberry.field(
        default=None,
        description="The number of the receipt mailed for this donation (as "
        "R-000123), once it is written; null without one (a guest who gave no "
        "donorEmail). Only the donor and admins see a pledge.",
    )
    receipt_issued_at: datetime | None = strawberry.field(
        default=None, description="The date the mailed receipt bears."
    )
    row: strawberry.Private[models.Pledge]

    @classmethod
    def from_model(cls, row: models.Pledge) -> Pledge:
        return from_attributes(
            cls, row, status=states.PledgeStatus(row.status), row=row
        )

    @strawberry.field
    async def campaign(self, info: Info) -> Campaign:
        row = await info.context.loaders.campaigns.load(self.row.campaign_id)
        assert row is not None  # a foreign key guarantees it
        return Campaign.from_model(row)

    @strawberry.field(
        description="Admin only (null for anyone else): the payment at the provider."
    )
    async def payment(self, info: Info) -> PledgePayment | None:
        principal = info.context.principal
        if principal is None or not principal.is_admin:
            return None
        runtime = info.context.runtime
        provider = runtime.settings.payment_provider
        if runtime.settings.stripe is None:
            return PledgePayment(provider=provider)
        intent = await info.context.loaders.payment_intents.load(self.row.id)
        return PledgePayment(
            provider=provider,
            payment_intent_id=intent,
            dashboard_url=dashboard_url(intent, live=runtime.settings.stripe.live)
            if intent
            else None,
        )

    @strawberry.field
    async def history(self, info: Info) -> list[PledgeTransition]:
        rows = await info.context.loaders.history.load(self.row.id)
        return [PledgeTransition.from_model(r) for r in rows]

    @strawberry.field(
        description="The plan this pledge charged; null for a one-off gift."
    )
    async def recurring_donation(self, info: Info) -> RecurringDonation | None:
        plan_id = self.row.recurring_donation_id
        if plan_id is None:
            return None
        db = info.context.runtime.db
        plan = await in_thread(lambda: recurring_service.plan_of(db, plan_id))
        return None if plan is None else RecurringDonation.from_model(plan)


@strawberry.type(
    description="A signed-in donor's weekly or monthly gift: one pledge per period."
)
class RecurringDonation:
    id: strawberry.ID
    amount_cents: int = strawberry.field(
        description="What each period to come is charged."
    )
    currency: str
    interval: RecurringInterval
    status: RecurringStatus
    next_charge_at: datetime | None = strawberry.field(
        description="When the next charge (or retry) is due; null unless ACTIVE."
    )
    failure_reason: str | None = strawberry.field(
        description="Why the last charge was declined, until one succeeds."
    )
    created_at: datetime
    row: strawberry.Private[models.RecurringDonation]

    @classmethod
    def from_model(cls, row: models.RecurringDonation) -> RecurringDonation:
        return from_attributes(
            cls,
            row,
            interval=RecurringInterval(row.interval),
            status=RecurringStatus(row.status),
            row=row,
        )

    @strawberry.field
    async def campaign(self, info: Info) -> Campaign:
        row = await info.context.loaders.campaigns.load(self.row.campaign_id)
        assert row is not None  # a foreign key guarantees it
        return Campaign.from_model(row)

    @strawberry.field(
        description="One pledge per try of a period (a declined period is tried "
        "again as a new pledge), newest first."
    )
    async def charges(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Pledge]:
        db, size, plan_id = info.context.runtime.db, page_size(first), self.row.id
        page = await in_thread(
            lambda: recurring_service.plan_charges(
                db, plan_id=plan_id, first=size, after=after
            )
        )
        return connection(page, Pledge.from_model)


@strawberry.type(
    description="Who collects the donations: named on every receipt (CAREFORALL_ORG_*)."
)
class Organisation:
    name: str
    address: str | None
    tax_id: str | None

"""Review through the services and the real outbox: a decision moves the
campaign as the domain allows, writes its audit row and a CampaignReviewed
event, and the organiser hears of it exactly once, also when the event is
delivered again; a campaign's first report tells every admin once."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.errors import Forbidden, InvalidTransition, NotFound
from careforall.domain.rules import Principal
from careforall.models import AuditLog, Campaign, OutboxEvent, User
from careforall.services import reports, reviews
from careforall.services.campaigns import get_campaign, list_campaigns
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.outbox import deliver, deliver_everything_again
from tests.services.conftest import Decided, MakeCampaign, MakeUser
from tests.services.test_notifications import feed


@pytest.fixture
def waiting(make_campaign: MakeCampaign, organiser: Principal) -> Campaign:
    return make_campaign(organiser, review=True)


def test_a_new_campaign_under_review_is_in_review_and_unlisted(
    db: Database, waiting: Campaign
) -> None:
    assert waiting.status == "IN_REVIEW"
    with db.read() as session:
        listed = list_campaigns(session, first=100, after=None, status=None).items
        stored = get_campaign(session, waiting.id)
    assert waiting.id not in {c.id for c in listed}
    assert stored is not None and stored.status == "IN_REVIEW"


def test_decisions_are_audited_and_told_once(
    db: Database,
    settings: Settings,
    organiser: Principal,
    decided: Decided,
) -> None:
    approved, rejected = decided
    deliver(db, settings)
    told = feed(db, organiser)
    assert sorted(kind for kind, _ in told) == [
        "CAMPAIGN_APPROVED",
        "CAMPAIGN_REJECTED",
        "CAMPAIGN_SUSPENDED",
    ]
    deliver_everything_again(db, settings)
    assert len(feed(db, organiser)) == 3

    with db.read() as session:
        audited = session.exec(select(AuditLog.action, AuditLog.target_id)).all()
        events = session.exec(
            select(OutboxEvent.name).where(OutboxEvent.name == "CampaignReviewed")
        ).all()
    assert sorted(audited) == sorted(
        [
            ("review_campaign", approved.id),
            ("review_campaign", rejected.id),
            ("suspend_campaign", approved.id),
        ]
    )
    assert len(events) == 3


def test_refusals_change_nothing(
    db: Database,
    uow: UnitOfWork,
    admin: Principal,
    organiser: Principal,
    make_user: MakeUser,
    waiting: Campaign,
    campaign: Campaign,
) -> None:
    stranger = make_user()
    with pytest.raises(Forbidden):
        reviews.review_campaign(
            uow, principal=organiser, campaign_id=waiting.id, approve=True, note=None
        )
    with pytest.raises(NotFound):
        reviews.review_campaign(
            uow, principal=admin, campaign_id="cmp_missing", approve=True, note=None
        )
    with pytest.raises(InvalidTransition):  # ACTIVE is not waiting for review
        reviews.review_campaign(
            uow, principal=admin, campaign_id=campaign.id, approve=True, note=None
        )
    with pytest.raises(InvalidTransition):  # IN_REVIEW is not live
        reviews.suspend_campaign(
            uow, principal=admin, campaign_id=waiting.id, note="why"
        )
    with pytest.raises(Forbidden):
        reviews.suspend_campaign(
            uow, principal=stranger, campaign_id=campaign.id, note="why"
        )
    with db.read() as session:
        statuses = {
            c.id: c.status
            for c in session.exec(select(Campaign)).all()
            if c.id in {waiting.id, campaign.id}
        }
        audited = session.exec(select(AuditLog)).all()
    assert statuses == {waiting.id: "IN_REVIEW", campaign.id: "ACTIVE"}
    assert audited == []


def test_a_campaigns_first_report_tells_every_admin_once(
    db: Database,
    settings: Settings,
    uow: UnitOfWork,
    admin: Principal,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    second_admin = make_user()
    with db.engine.begin() as conn:
        conn.execute(
            update(User).where(col(User.id) == second_admin.id).values(role="ADMIN")
        )
    for n, address in enumerate(("10.0.0.1", "10.0.0.2")):
        reports.report_campaign(
            UnitOfWork(db),
            principal=make_user(),
            campaign_id=campaign.id,
            reason=f"Doubtful {n}",
            address=address,
        )
    deliver(db, settings)
    deliver_everything_again(db, settings)
    for who in (admin, second_admin):
        assert feed(db, who) == [("CAMPAIGN_REPORTED", None)]

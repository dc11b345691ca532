"""Campaigns through the service layer: validation, who may change a status,
CLOSED is final, the status event, and keyset-paged listing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import (
    BadUserInput,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
    Unauthenticated,
)
from careforall.domain.rules import Principal
from careforall.domain.states import CampaignStatus
from careforall.models import Campaign, CampaignTotals
from careforall.services.campaigns import (
    create_campaign,
    get_campaign,
    list_campaigns,
    set_campaign_status,
)
from careforall.services.pagination import encode_cursor
from careforall.services.totals import campaign_totals, read_totals
from careforall.services.unit_of_work import UnitOfWork
from tests.services.conftest import (
    MakeAnon,
    MakeCampaign,
    MakeUser,
    campaign_data,
    count_rows,
)

S = CampaignStatus


def _events(db: Database, name: str) -> list[dict[str, object]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT payload FROM outbox_events WHERE name = :n ORDER BY id"),
            {"n": name},
        ).all()
    return [json.loads(r[0]) for r in rows]


# --- create --------------------------------------------------------------------


def test_create_campaign_is_active_with_zero_totals_and_an_event(
    db: Database, uow: UnitOfWork, organiser: Principal
) -> None:
    campaign = create_campaign(
        uow,
        principal=organiser,
        data=campaign_data(
            title="  Surgery for Sam  ", goal_cents=750_000, currency="EUR"
        ),
    )
    assert campaign.status == "ACTIVE"
    assert campaign.owner_id == organiser.id
    assert campaign.title == "Surgery for Sam"  # trimmed
    assert (campaign.goal_cents, campaign.currency) == (750_000, "EUR")
    with db.read() as session:
        stored = get_campaign(session, campaign.id)
        totals = read_totals(session, [campaign.id]).get(campaign.id)
    assert stored is not None and stored.title == "Surgery for Sam"
    assert totals is not None
    assert (totals.raised_cents, totals.pledge_count) == (0, 0)
    assert _events(db, "CampaignCreated") == [
        {"campaign_id": campaign.id, "owner_id": organiser.id}
    ]


def test_the_totals_read_sees_what_the_orm_sees(
    uow: UnitOfWork, db: Database, organiser: Principal
) -> None:
    campaign = create_campaign(uow, principal=organiser, data=campaign_data())
    other = create_campaign(uow, principal=organiser, data=campaign_data())
    with db.write_session() as session:
        row = session.get(CampaignTotals, campaign.id)
        assert row is not None
        row.raised_cents, row.pledge_count = 12_345, 3
        session.add(row)
        session.commit()
    with db.read() as session:
        orm = session.get(CampaignTotals, campaign.id)
        assert orm is not None
        # One campaign, several, and an unknown one among them.
        one = read_totals(session, [campaign.id])
        many = read_totals(session, [campaign.id, other.id, "cmp_unknown"])
    fast = campaign_totals(db, campaign.id)
    assert fast is not None and one == {campaign.id: fast}
    assert (fast.campaign_id, fast.raised_cents, fast.pledge_count) == (
        campaign.id,
        12_345,
        3,
    )
    assert fast.updated_at == orm.updated_at
    assert fast.updated_at.tzinfo is not None
    assert set(many) == {campaign.id, other.id}
    assert (many[other.id].raised_cents, many[other.id].pledge_count) == (0, 0)
    assert campaign_totals(db, "cmp_unknown") is None


def test_ends_at_in_the_future_is_kept_in_utc(
    uow: UnitOfWork, organiser: Principal
) -> None:
    local = datetime.now(timezone(timedelta(hours=5))) + timedelta(days=3)
    campaign = create_campaign(
        uow, principal=organiser, data=campaign_data(ends_at=local)
    )
    assert campaign.ends_at == local
    assert campaign.ends_at is not None and campaign.ends_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "changes",
    [
        {"title": ""},
        {"title": "   "},
        {"title": "t" * 201},
        {"description": ""},
        {"description": "d" * 20_001},
        {"category": ""},
        {"category": "c" * 51},
        {"goal_cents": 0},
        {"goal_cents": -1},
        {"goal_cents": 2_000_000_001},
        {"currency": "usd"},
        {"currency": "XYZ"},
        {"currency": ""},
        {"ends_at": "past"},
        {"ends_at": "now"},
    ],
    ids=lambda c: f"{next(iter(c))}={str(next(iter(c.values())))[:12]!r}",
)
def test_invalid_campaigns_are_refused_and_nothing_is_stored(
    changes: dict[str, object], db: Database, uow: UnitOfWork, organiser: Principal
) -> None:
    if changes.get("ends_at") == "past":
        changes = {"ends_at": utcnow() - timedelta(minutes=1)}
    elif changes.get("ends_at") == "now":
        changes = {"ends_at": utcnow()}
    before = count_rows(db, "campaigns"), count_rows(db, "outbox_events")
    with pytest.raises(BadUserInput):
        create_campaign(uow, principal=organiser, data=campaign_data(**changes))
    assert (count_rows(db, "campaigns"), count_rows(db, "outbox_events")) == before


def test_limits_themselves_are_accepted(uow: UnitOfWork, organiser: Principal) -> None:
    for changes in (
        {
            "title": "t" * 200,
            "description": "d" * 20_000,
            "category": "c" * 50,
            "goal_cents": 1,
        },
        {
            "title": "t",
            "description": "d",
            "category": "c",
            "goal_cents": 2_000_000_000,
        },
    ):
        campaign = create_campaign(
            uow, principal=organiser, data=campaign_data(**changes)
        )
        assert campaign.goal_cents == changes["goal_cents"]


def test_a_naive_ends_at_is_read_as_utc(uow: UnitOfWork, organiser: Principal) -> None:
    naive = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    campaign = create_campaign(
        uow, principal=organiser, data=campaign_data(ends_at=naive)
    )
    assert campaign.ends_at == naive.replace(tzinfo=UTC)


def test_creating_needs_an_account(
    db: Database, uow: UnitOfWork, make_anon: MakeAnon
) -> None:
    guest, _ = make_anon()
    for principal in (None, guest):
        with pytest.raises(Unauthenticated) as refused:
            create_campaign(uow, principal=principal, data=campaign_data())
        assert refused.value.code == "UNAUTHENTICATED"
    assert count_rows(db, "campaigns") == 0


# --- status --------------------------------------------------------------------


def _status(db: Database, campaign_id: str) -> str:
    with db.read() as session:
        row = session.get(Campaign, campaign_id)
        assert row is not None
        return row.status


def test_owner_pauses_resumes_and_closes(
    db: Database, uow: UnitOfWork, campaign: Campaign, organiser: Principal
) -> None:
    for status in (S.PAUSED, S.ACTIVE, S.PAUSED, S.CLOSED):
        changed = set_campaign_status(
            uow, principal=organiser, campaign_id=campaign.id, status=status
        )
        assert changed.status == status.value
        assert _status(db, campaign.id) == status.value
    assert [
        (e["from_status"], e["to_status"], e["source"])
        for e in _events(db, "CampaignStatusChanged")
    ] == [
        ("ACTIVE", "PAUSED", "owner"),
        ("PAUSED", "ACTIVE", "owner"),
        ("ACTIVE", "PAUSED", "owner"),
        ("PAUSED", "CLOSED", "owner"),
    ]
    assert {e["campaign_id"] for e in _events(db, "CampaignStatusChanged")} == {
        campaign.id
    }


def test_an_admin_may_change_anyones_campaign(
    db: Database, uow: UnitOfWork, campaign: Campaign, admin: Principal
) -> None:
    set_campaign_status(uow, principal=admin, campaign_id=campaign.id, status=S.PAUSED)
    assert _status(db, campaign.id) == "PAUSED"
    (event,) = _events(db, "CampaignStatusChanged")
    assert event["source"] == "admin"


@pytest.mark.parametrize("who", ["other user", "anonymous", "nobody"])
def test_others_may_not_change_a_campaign(
    who: str,
    db: Database,
    uow: UnitOfWork,
    campaign: Campaign,
    make_user: MakeUser,
    make_anon: MakeAnon,
) -> None:
    principal: Principal | None
    expected: type[DomainError]
    if who == "other user":
        principal, expected = make_user(), Forbidden
    elif who == "anonymous":
        principal, expected = make_anon()[0], Unauthenticated
    else:
        principal, expected = None, Unauthenticated
    with pytest.raises(expected):
        set_campaign_status(
            uow, principal=principal, campaign_id=campaign.id, status=S.CLOSED
        )
    assert _status(db, campaign.id) == "ACTIVE"
    assert _events(db, "CampaignStatusChanged") == []


def test_unknown_campaign_is_not_found(uow: UnitOfWork, organiser: Principal) -> None:
    with pytest.raises(NotFound):
        set_campaign_status(
            uow, principal=organiser, campaign_id="cmp_nope", status=S.PAUSED
        )


@pytest.mark.parametrize("target", [S.ACTIVE, S.PAUSED])
@pytest.mark.parametrize("actor", ["owner", "admin"])
def test_closed_is_final(
    target: CampaignStatus,
    actor: str,
    db: Database,
    uow: UnitOfWork,
    campaign: Campaign,
    organiser: Principal,
    admin: Principal,
) -> None:
    set_campaign_status(
        uow, principal=organiser, campaign_id=campaign.id, status=S.CLOSED
    )
    events_before = len(_events(db, "CampaignStatusChanged"))
    with pytest.raises(InvalidTransition) as refused:
        set_campaign_status(
            uow,
            principal=organiser if actor == "owner" else admin,
            campaign_id=campaign.id,
            status=target,
        )
    assert refused.value.code == "INVALID_TRANSITION"
    assert _status(db, campaign.id) == "CLOSED"
    assert len(_events(db, "CampaignStatusChanged")) == events_before


@pytest.mark.parametrize("status", [S.ACTIVE, S.PAUSED, S.CLOSED])
def test_setting_the_same_status_changes_nothing(
    status: CampaignStatus,
    db: Database,
    uow: UnitOfWork,
    campaign: Campaign,
    organiser: Principal,
) -> None:
    if status != S.ACTIVE:
        set_campaign_status(
            uow, principal=organiser, campaign_id=campaign.id, status=status
        )
    events_before = len(_events(db, "CampaignStatusChanged"))
    again = set_campaign_status(
        uow, principal=organiser, campaign_id=campaign.id, status=status
    )
    # the returned row stays readable although nothing was committed
    assert (again.id, again.status) == (campaign.id, status.value)
    assert len(_events(db, "CampaignStatusChanged")) == events_before
    assert _status(db, campaign.id) == status.value


def test_status_change_keeps_the_totals_row(
    db: Database, uow: UnitOfWork, campaign: Campaign, organiser: Principal
) -> None:
    set_campaign_status(
        uow, principal=organiser, campaign_id=campaign.id, status=S.CLOSED
    )
    with db.read() as session:
        assert session.get(CampaignTotals, campaign.id) is not None


# --- listing -------------------------------------------------------------------


def _all_pages(
    db: Database, first: int, status: CampaignStatus | None = None
) -> tuple[list[str], int]:
    ids: list[str] = []
    after: str | None = None
    pages = 0
    with db.read() as session:
        while True:
            page = list_campaigns(session, first=first, after=after, status=status)
            pages += 1
            assert len(page.items) <= first
            assert len(page.cursors) == len(page.items)
            ids.extend(c.id for c in page.items)
            if not page.has_next_page:
                return ids, pages
            assert page.end_cursor is not None
            after = page.end_cursor
            assert pages <= 20


def test_list_pages_newest_first_with_cursors(
    db: Database, organiser: Principal, make_campaign: MakeCampaign
) -> None:
    created = [make_campaign(organiser).id for _ in range(7)]

    ids, pages = _all_pages(db, first=3)

    assert ids == list(reversed(created))
    assert pages == 3
    assert _all_pages(db, first=7) == (ids, 1)
    assert _all_pages(db, first=100) == (ids, 1)
    with db.read() as session:
        last = list_campaigns(
            session, first=3, after=encode_cursor(created[0]), status=None
        )
    assert (list(last.items), last.has_next_page, last.end_cursor) == ([], False, None)


def test_list_filters_by_status(
    db: Database,
    uow: UnitOfWork,
    organiser: Principal,
    make_campaign: MakeCampaign,
) -> None:
    created = [make_campaign(organiser).id for _ in range(6)]
    wanted = {created[0]: S.PAUSED, created[2]: S.PAUSED, created[3]: S.CLOSED}
    for campaign_id, status in wanted.items():
        set_campaign_status(
            uow, principal=organiser, campaign_id=campaign_id, status=status
        )

    paused, _ = _all_pages(db, first=1, status=S.PAUSED)
    closed, _ = _all_pages(db, first=10, status=S.CLOSED)
    active, _ = _all_pages(db, first=2, status=S.ACTIVE)

    assert paused == [created[2], created[0]]
    assert closed == [created[3]]
    assert active == [created[5], created[4], created[1]]


@pytest.mark.parametrize("cursor", ["garbage", "", "bm90LXYx", "%%%", "v1:cmp_x"])
def test_a_bad_cursor_is_bad_user_input(cursor: str, db: Database) -> None:
    with db.read() as session, pytest.raises(BadUserInput):
        list_campaigns(session, first=10, after=cursor, status=None)


@pytest.mark.parametrize("first", [0, -1, 101, 10_000])
def test_first_outside_1_to_100_is_bad_user_input(first: int, db: Database) -> None:
    with db.read() as session, pytest.raises(BadUserInput):
        list_campaigns(session, first=first, after=None, status=None)


@pytest.mark.parametrize("first", [1, 100])
def test_first_at_the_limits_is_accepted(
    first: int, db: Database, organiser: Principal, make_campaign: MakeCampaign
) -> None:
    created = [make_campaign(organiser).id for _ in range(2)]
    with db.read() as session:
        page = list_campaigns(session, first=first, after=None, status=None)
    assert [c.id for c in page.items] == list(reversed(created))[:first]
    assert page.has_next_page is (first == 1)

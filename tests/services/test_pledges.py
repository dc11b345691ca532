"""create_pledge through the service layer: idempotency (the Stripe rules),
validation that stores nothing on refusal, and my_donations."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import text, update

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import (
    BadUserInput,
    CampaignNotActive,
    DomainError,
    IdempotencyKeyReused,
    NotFound,
    Unauthenticated,
)
from careforall.domain.rules import Principal
from careforall.domain.states import CampaignStatus
from careforall.models import Campaign, Pledge, table_of
from careforall.services.campaigns import set_campaign_status
from careforall.services.pledges import PledgeData, create_pledge, my_donations
from careforall.services.unit_of_work import UnitOfWork
from tests.services.conftest import MakeAnon, MakeCampaign, MakeUser, count_rows

TABLES = ("pledges", "pledge_transitions", "outbox_events")


def _counts(db: Database) -> dict[str, int]:
    return {table: count_rows(db, table) for table in TABLES}


def _data(campaign: Campaign, **changes: object) -> PledgeData:
    base = PledgeData(
        campaign_id=campaign.id,
        amount_cents=2500,
        idempotency_key="key-1",
        currency="USD",
        donor_name="Ann",
        message="Get well soon",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _outbox(db: Database) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(text("SELECT name, payload FROM outbox_events"))
        ]


# --- creation ------------------------------------------------------------------


def test_create_pledge_stores_a_pending_pledge_its_history_and_one_event(
    db: Database, uow: UnitOfWork, campaign: Campaign, make_anon: MakeAnon
) -> None:
    guest, _ = make_anon()
    before = _counts(db)

    pledge = create_pledge(uow, principal=guest, data=_data(campaign))

    assert pledge.status == "PENDING"
    assert (pledge.campaign_id, pledge.amount_cents, pledge.currency) == (
        campaign.id,
        2500,
        "USD",
    )
    assert (pledge.donor_session_id, pledge.donor_user_id) == (guest.id, None)
    assert (pledge.donor_name, pledge.message) == ("Ann", "Get well soon")
    assert _counts(db) == {t: n + 1 for t, n in before.items()}
    with db.engine.connect() as conn:
        history = conn.execute(
            text(
                "SELECT from_status, to_status, source FROM pledge_transitions "
                "WHERE pledge_id = :p"
            ),
            {"p": pledge.id},
        ).all()
    assert [tuple(r) for r in history] == [(None, "PENDING", "api")]
    assert _outbox(db)[-1][0] == "PledgeCreated"
    assert pledge.id in _outbox(db)[-1][1]


def test_the_pledge_answered_is_the_pledge_stored_column_for_column(
    db: Database, uow: UnitOfWork, campaign: Campaign, make_anon: MakeAnon
) -> None:
    """createPledge answers with an object built from the row it inserted: a
    column the row lacks (one added to the table later) must fail here."""
    guest, _ = make_anon()
    answered = create_pledge(uow, principal=guest, data=_data(campaign))
    with db.read() as session:
        stored = session.get(Pledge, answered.id)
    assert stored is not None
    columns = [column.name for column in table_of(Pledge).columns]
    assert set(columns) <= vars(answered).keys()  # every column set, not defaulted
    assert {c: getattr(answered, c) for c in columns} == {
        c: getattr(stored, c) for c in columns
    }
    assert answered.model_dump() == stored.model_dump()


def test_a_user_pledge_belongs_to_the_user(
    uow: UnitOfWork, campaign: Campaign, make_user: MakeUser
) -> None:
    donor = make_user()
    pledge = create_pledge(uow, principal=donor, data=_data(campaign))
    assert (pledge.donor_user_id, pledge.donor_session_id) == (donor.id, None)


def test_no_principal_is_unauthenticated(
    db: Database, uow: UnitOfWork, campaign: Campaign
) -> None:
    before = _counts(db)
    with pytest.raises(Unauthenticated):
        create_pledge(uow, principal=None, data=_data(campaign))
    assert _counts(db) == before


def test_a_principal_that_does_not_exist_is_unauthenticated(
    db: Database, uow: UnitOfWork, campaign: Campaign
) -> None:
    ghost = Principal(kind="anon", id="anon_000000000000deadbeef00")
    with pytest.raises(Unauthenticated):
        create_pledge(uow, principal=ghost, data=_data(campaign))
    assert count_rows(db, "pledges") == 0


# --- idempotency ---------------------------------------------------------------


@pytest.fixture(params=["user", "anon"])
def donor(
    request: pytest.FixtureRequest, make_user: MakeUser, make_anon: MakeAnon
) -> Principal:
    """A donor of each kind in turn: an account, then an anonymous session."""
    return make_user() if request.param == "user" else make_anon()[0]


def test_same_key_and_parameters_return_the_same_pledge_and_write_nothing_more(
    db: Database, uow: UnitOfWork, campaign: Campaign, donor: Principal
) -> None:
    first = create_pledge(uow, principal=donor, data=_data(campaign))
    after_first = _counts(db)

    replays = [
        create_pledge(uow, principal=donor, data=_data(campaign)) for _ in range(3)
    ]

    assert {p.id for p in replays} == {first.id}
    assert _counts(db) == after_first
    assert [name for name, _ in _outbox(db)].count("PledgeCreated") == 1


def test_replay_returns_the_pledge_as_it_is_now(
    db: Database, uow: UnitOfWork, campaign: Campaign, make_anon: MakeAnon
) -> None:
    guest, _ = make_anon()
    first = create_pledge(uow, principal=guest, data=_data(campaign))
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE pledges SET status = 'AUTHORIZED' WHERE id = :p"),
            {"p": first.id},
        )
    again = create_pledge(uow, principal=guest, data=_data(campaign))
    assert (again.id, again.status) == (first.id, "AUTHORIZED")


@pytest.mark.parametrize(
    "changed",
    [
        {"amount_cents": 2501},
        {"campaign_id": "other"},
        {"currency": "EUR"},
        {"donor_name": "Bob"},
        {"donor_name": None},
        {"message": "Something else"},
        {"message": None},
    ],
    ids=lambda c: next(iter(c)) + ("=None" if next(iter(c.values())) is None else ""),
)
def test_same_key_with_different_parameters_is_refused(
    changed: dict[str, object],
    db: Database,
    uow: UnitOfWork,
    campaign: Campaign,
    organiser: Principal,
    make_campaign: MakeCampaign,
    make_anon: MakeAnon,
) -> None:
    guest, _ = make_anon()
    if changed.get("campaign_id") == "other":
        changed = {"campaign_id": make_campaign(organiser).id}
    first = create_pledge(uow, principal=guest, data=_data(campaign))
    before = _counts(db)

    with pytest.raises(IdempotencyKeyReused) as refused:
        create_pledge(uow, principal=guest, data=_data(campaign, **changed))

    assert refused.value.code == "IDEMPOTENCY_KEY_REUSED"
    assert _counts(db) == before
    with db.read() as session:
        kept = session.get(Pledge, first.id)
    assert kept is not None
    assert (kept.amount_cents, kept.campaign_id, kept.donor_name) == (
        2500,
        campaign.id,
        "Ann",
    )


def test_same_key_from_another_principal_makes_a_separate_pledge(
    db: Database,
    uow: UnitOfWork,
    campaign: Campaign,
    make_user: MakeUser,
    make_anon: MakeAnon,
) -> None:
    donors = [make_user(), make_user(), make_anon()[0], make_anon()[0]]
    pledges = [create_pledge(uow, principal=d, data=_data(campaign)) for d in donors]
    assert len({p.id for p in pledges}) == len(donors)
    assert count_rows(db, "pledges") == len(donors)


def test_a_user_and_an_anonymous_session_with_the_same_id_have_separate_keys(
    db: Database, uow: UnitOfWork, campaign: Campaign, make_user: MakeUser
) -> None:
    """Scopes are kind:id, so only the kinds tell these apart."""
    user = make_user()
    with db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO anonymous_sessions (id, created_at) VALUES (:i, :t)"),
            {"i": user.id, "t": "2025-01-01 00:00:00.000000"},
        )
    anon = Principal(kind="anon", id=user.id)
    a = create_pledge(uow, principal=user, data=_data(campaign))
    b = create_pledge(uow, principal=anon, data=_data(campaign, amount_cents=999))
    assert a.id != b.id
    assert (b.donor_session_id, b.donor_user_id) == (user.id, None)


def test_concurrent_requests_with_one_key_make_one_pledge(
    db: Database, campaign: Campaign, make_anon: MakeAnon
) -> None:
    guest, _ = make_anon()
    before = _counts(db)
    callers = 20
    barrier = threading.Barrier(callers)
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            barrier.wait(timeout=10)
            pledge = create_pledge(
                UnitOfWork(db), principal=guest, data=_data(campaign)
            )
            with lock:
                ids.append(pledge.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(ids) == callers
    assert len(set(ids)) == 1
    assert _counts(db) == {t: n + 1 for t, n in before.items()}


# --- validation: nothing stored on refusal ---------------------------------------


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"amount_cents": 0}, BadUserInput),
        ({"amount_cents": -100}, BadUserInput),
        ({"amount_cents": 100_000_001}, BadUserInput),
        ({"currency": "usd"}, BadUserInput),
        ({"currency": "XYZ"}, BadUserInput),
        ({"currency": ""}, BadUserInput),
        ({"currency": "EUR"}, BadUserInput),  # a real code, not the campaign's
        ({"campaign_id": "cmp_does_not_exist"}, NotFound),
        ({"idempotency_key": ""}, BadUserInput),
        ({"idempotency_key": " key"}, BadUserInput),
        ({"idempotency_key": "k" * 256}, BadUserInput),
        ({"donor_name": "n" * 101}, BadUserInput),
        ({"message": "m" * 1001}, BadUserInput),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else v.__name__,
)
def test_invalid_pledges_are_refused_and_nothing_is_stored(
    changes: dict[str, object],
    error: type[DomainError],
    db: Database,
    uow: UnitOfWork,
    campaign: Campaign,
    make_anon: MakeAnon,
) -> None:
    guest, _ = make_anon()
    before = _counts(db)
    with pytest.raises(error):
        create_pledge(uow, principal=guest, data=_data(campaign, **changes))
    assert _counts(db) == before


def test_limits_themselves_are_accepted(
    uow: UnitOfWork, campaign: Campaign, make_anon: MakeAnon
) -> None:
    guest, _ = make_anon()
    for amount in (1, 100_000_000):
        pledge = create_pledge(
            uow,
            principal=guest,
            data=_data(
                campaign,
                amount_cents=amount,
                idempotency_key=f"{amount:0>255}",
                donor_name="n" * 100,
                message="m" * 1000,
            ),
        )
        assert pledge.amount_cents == amount


def test_a_currency_mismatch_names_the_campaign_currency(
    uow: UnitOfWork,
    organiser: Principal,
    make_campaign: MakeCampaign,
    make_anon: MakeAnon,
) -> None:
    euro = make_campaign(organiser, currency="EUR")
    guest, _ = make_anon()
    with pytest.raises(BadUserInput) as refused:
        create_pledge(uow, principal=guest, data=_data(euro, currency="USD"))
    assert "EUR" in refused.value.message
    assert (
        create_pledge(uow, principal=guest, data=_data(euro, currency="EUR")).currency
        == "EUR"
    )


@pytest.mark.parametrize("status", [CampaignStatus.PAUSED, CampaignStatus.CLOSED])
def test_paused_and_closed_campaigns_take_no_pledges(
    status: CampaignStatus,
    db: Database,
    uow: UnitOfWork,
    campaign: Campaign,
    organiser: Principal,
    make_anon: MakeAnon,
) -> None:
    set_campaign_status(
        uow, principal=organiser, campaign_id=campaign.id, status=status
    )
    guest, _ = make_anon()
    before = _counts(db)
    with pytest.raises(CampaignNotActive) as refused:
        create_pledge(uow, principal=guest, data=_data(campaign))
    assert refused.value.code == "CAMPAIGN_NOT_ACTIVE"
    assert _counts(db) == before


def test_a_refused_pledge_does_not_use_up_its_key(
    uow: UnitOfWork, campaign: Campaign, organiser: Principal, make_anon: MakeAnon
) -> None:
    set_campaign_status(
        uow, principal=organiser, campaign_id=campaign.id, status=CampaignStatus.PAUSED
    )
    guest, _ = make_anon()
    with pytest.raises(CampaignNotActive):
        create_pledge(uow, principal=guest, data=_data(campaign))
    set_campaign_status(
        uow, principal=organiser, campaign_id=campaign.id, status=CampaignStatus.ACTIVE
    )
    assert create_pledge(uow, principal=guest, data=_data(campaign)).status == "PENDING"


def test_an_ended_campaign_takes_no_pledges(
    db: Database,
    uow: UnitOfWork,
    organiser: Principal,
    make_campaign: MakeCampaign,
    make_anon: MakeAnon,
) -> None:
    ending = make_campaign(organiser, ends_at=utcnow() + timedelta(days=30))
    guest, _ = make_anon()
    create_pledge(
        uow, principal=guest, data=_data(ending, idempotency_key="before-end")
    )
    with db.engine.begin() as conn:
        conn.execute(
            update(Campaign)
            .where(Campaign.id == ending.id)  # type: ignore[arg-type]
            .values(ends_at=utcnow() - timedelta(seconds=1))
        )
    before = _counts(db)
    with pytest.raises(CampaignNotActive):
        create_pledge(
            uow, principal=guest, data=_data(ending, idempotency_key="after-end")
        )
    assert _counts(db) == before


def test_replaying_a_key_after_the_campaign_paused_returns_the_pledge(
    uow: UnitOfWork, campaign: Campaign, organiser: Principal, make_anon: MakeAnon
) -> None:
    """A retry of a request that succeeded must not turn into an error."""
    guest, _ = make_anon()
    first = create_pledge(uow, principal=guest, data=_data(campaign))
    set_campaign_status(
        uow, principal=organiser, campaign_id=campaign.id, status=CampaignStatus.PAUSED
    )
    assert create_pledge(uow, principal=guest, data=_data(campaign)).id == first.id


# --- my_donations --------------------------------------------------------------


def _pledge_many(
    uow: UnitOfWork, donor: Principal, campaign: Campaign, n: int, tag: str
) -> list[str]:
    return [
        create_pledge(
            uow,
            principal=donor,
            data=_data(campaign, idempotency_key=f"{tag}-{i}", amount_cents=100 + i),
        ).id
        for i in range(n)
    ]


def test_my_donations_lists_newest_first_in_pages(
    db: Database, uow: UnitOfWork, campaign: Campaign, donor: Principal
) -> None:
    created = _pledge_many(uow, donor, campaign, 5, "mine")

    seen: list[str] = []
    after: str | None = None
    pages = 0
    with db.read() as session:
        while True:
            page = my_donations(session, principal=donor, first=2, after=after)
            pages += 1
            seen.extend(p.id for p in page.items)
            assert len(page.items) == len(page.cursors)
            if not page.has_next_page:
                break
            after = page.end_cursor
            assert pages < 10
    assert pages == 3
    assert seen == list(reversed(created))


def test_my_donations_shows_only_the_callers_pledges(
    db: Database,
    uow: UnitOfWork,
    campaign: Campaign,
    make_user: MakeUser,
    make_anon: MakeAnon,
) -> None:
    alice, bob = make_user(), make_user()
    guest, other_guest = make_anon()[0], make_anon()[0]
    mine = {
        alice.id: _pledge_many(uow, alice, campaign, 2, "a"),
        bob.id: _pledge_many(uow, bob, campaign, 1, "b"),
        guest.id: _pledge_many(uow, guest, campaign, 3, "g"),
        other_guest.id: [],
    }
    with db.read() as session:
        for donor in (alice, bob, guest, other_guest):
            page = my_donations(session, principal=donor, first=100, after=None)
            assert [p.id for p in page.items] == list(reversed(mine[donor.id]))
            assert page.has_next_page is False


def test_my_donations_refuses_bad_arguments(db: Database, make_anon: MakeAnon) -> None:
    guest, _ = make_anon()
    with db.read() as session:
        with pytest.raises(Unauthenticated):
            my_donations(session, principal=None, first=10, after=None)
        for first in (0, -1, 101):
            with pytest.raises(BadUserInput):
                my_donations(session, principal=guest, first=first, after=None)
        with pytest.raises(BadUserInput):
            my_donations(session, principal=guest, first=10, after="not-a-cursor")

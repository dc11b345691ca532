"""The pledge machine: strict client moves (`fire`), lenient provider events
(`advance`/`path_to`), what totals count, and campaign status rules."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from careforall.domain.errors import InvalidTransition
from careforall.domain.states import (
    PLEDGE_MACHINE,
    Actor,
    CampaignAction,
    CampaignStatus,
    PledgeStatus,
    advance,
    campaign_move,
    counts_in_totals,
    fire,
    path_to,
)

P = PledgeStatus
AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class Row:
    """Stands in for a Pledge row: anything with a `status` attribute."""

    status: str


ALL_PAIRS = list(itertools.product(P, P))

# The only one-step moves a client may ask for (contract § Pledge states).
CLIENT_MOVES = {
    (P.PENDING, P.AUTHORIZED),
    (P.AUTHORIZED, P.CAPTURED),
    (P.CAPTURED, P.REFUNDED),
    (P.PENDING, P.FAILED),
    (P.AUTHORIZED, P.FAILED),
}
FORBIDDEN_MOVES = [pair for pair in ALL_PAIRS if pair not in CLIENT_MOVES]

# What a provider event for `target` implies from `current`: every missing step,
# or nothing when the event is late, repeated or excluded by a terminal state.
IMPLIED: dict[tuple[PledgeStatus, PledgeStatus], list[PledgeStatus]] = {
    (P.PENDING, P.PENDING): [],
    (P.PENDING, P.AUTHORIZED): [P.AUTHORIZED],
    (P.PENDING, P.CAPTURED): [P.AUTHORIZED, P.CAPTURED],
    (P.PENDING, P.REFUNDED): [P.AUTHORIZED, P.CAPTURED, P.REFUNDED],
    (P.PENDING, P.FAILED): [P.FAILED],
    (P.AUTHORIZED, P.PENDING): [],
    (P.AUTHORIZED, P.AUTHORIZED): [],
    (P.AUTHORIZED, P.CAPTURED): [P.CAPTURED],
    (P.AUTHORIZED, P.REFUNDED): [P.CAPTURED, P.REFUNDED],
    (P.AUTHORIZED, P.FAILED): [P.FAILED],
    (P.CAPTURED, P.PENDING): [],
    (P.CAPTURED, P.AUTHORIZED): [],
    (P.CAPTURED, P.CAPTURED): [],
    (P.CAPTURED, P.REFUNDED): [P.REFUNDED],
    (P.CAPTURED, P.FAILED): [],
    **{(P.REFUNDED, target): [] for target in P},
    **{(P.FAILED, target): [] for target in P},
}


def _ids(pair: tuple[PledgeStatus, PledgeStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_implied_table_covers_every_pair() -> None:
    assert set(IMPLIED) == set(ALL_PAIRS)


# --- fire: a client's one-step move -------------------------------------------


@pytest.mark.parametrize("pair", sorted(CLIENT_MOVES), ids=_ids)
def test_fire_allows_each_client_move(pair: tuple[PledgeStatus, PledgeStatus]) -> None:
    current, target = pair
    row = Row(status=current.value)

    step = fire(row, target, source="api:test", at=AT)

    assert row.status == target.value
    assert type(row.status) is str  # the column keeps a plain string, not the enum
    assert (step.from_status, step.to_status) == (current, target)
    assert step.source == "api:test"
    assert step.at == AT


@pytest.mark.parametrize("pair", FORBIDDEN_MOVES, ids=_ids)
def test_fire_refuses_every_other_move(pair: tuple[PledgeStatus, PledgeStatus]) -> None:
    current, target = pair
    row = Row(status=current.value)

    with pytest.raises(InvalidTransition) as refused:
        fire(row, target, source="api:test", at=AT)

    assert refused.value.code == "INVALID_TRANSITION"
    assert current.value in refused.value.message
    assert target.value in refused.value.message
    assert row.status == current.value


def test_fire_walks_the_whole_successful_path() -> None:
    row = Row(status=P.PENDING.value)
    steps = [
        fire(row, target, source=f"api:{i}", at=AT)
        for i, target in enumerate([P.AUTHORIZED, P.CAPTURED, P.REFUNDED])
    ]
    assert [(s.from_status, s.to_status, s.source) for s in steps] == [
        (P.PENDING, P.AUTHORIZED, "api:0"),
        (P.AUTHORIZED, P.CAPTURED, "api:1"),
        (P.CAPTURED, P.REFUNDED, "api:2"),
    ]
    assert row.status == "REFUNDED"


def test_fire_accepts_a_row_whose_status_is_the_enum() -> None:
    row = Row(status=P.PENDING)
    fire(row, P.AUTHORIZED, source="api", at=AT)
    assert row.status == "AUTHORIZED"
    assert type(row.status) is str


def test_rows_are_never_registered_with_the_shared_machine() -> None:
    models_before = list(PLEDGE_MACHINE.models)
    row = Row(status=P.PENDING.value)
    fire(row, P.AUTHORIZED, source="api", at=AT)
    advance(row, P.REFUNDED, source="provider", at=AT)
    assert list(PLEDGE_MACHINE.models) == models_before
    assert not hasattr(row, "authorize")  # no trigger methods bolted onto the row


# --- advance / path_to: a provider event implies the steps before it ----------


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_ids)
def test_path_to_implies_the_missing_steps(
    pair: tuple[PledgeStatus, PledgeStatus],
) -> None:
    current, target = pair
    assert path_to(current, target) == IMPLIED[pair]


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_ids)
def test_advance_records_each_implied_step(
    pair: tuple[PledgeStatus, PledgeStatus],
) -> None:
    current, target = pair
    row = Row(status=current.value)

    steps = advance(row, target, source="provider:evt_1", at=AT)

    expected_states = IMPLIED[pair]
    chain = [current, *expected_states]
    assert [(s.from_status, s.to_status) for s in steps] == list(
        itertools.pairwise(chain)
    )
    assert all(s.source == "provider:evt_1" and s.at == AT for s in steps)
    assert row.status == (expected_states[-1] if expected_states else current).value
    assert type(row.status) is str


def test_captured_on_a_pending_pledge_records_authorized_then_captured() -> None:
    row = Row(status="PENDING")
    steps = advance(row, P.CAPTURED, source="webhook", at=AT)
    assert [(s.from_status.value, s.to_status.value) for s in steps] == [
        ("PENDING", "AUTHORIZED"),
        ("AUTHORIZED", "CAPTURED"),
    ]
    assert row.status == "CAPTURED"


@pytest.mark.parametrize("start", [P.PENDING, P.AUTHORIZED])
def test_refunded_before_capture_passes_through_captured(start: PledgeStatus) -> None:
    row = Row(status=start.value)
    steps = advance(row, P.REFUNDED, source="webhook", at=AT)
    assert [s.to_status for s in steps][-2:] == [P.CAPTURED, P.REFUNDED]
    assert steps[0].from_status == start
    assert row.status == "REFUNDED"


@pytest.mark.parametrize("start", [P.CAPTURED, P.REFUNDED, P.FAILED])
def test_failed_only_from_pending_or_authorized(start: PledgeStatus) -> None:
    row = Row(status=start.value)
    assert advance(row, P.FAILED, source="webhook", at=AT) == []
    assert row.status == start.value


def test_repeated_event_is_a_no_op() -> None:
    row = Row(status="PENDING")
    first = advance(row, P.CAPTURED, source="webhook", at=AT)
    again = advance(row, P.CAPTURED, source="webhook", at=AT)
    assert len(first) == 2
    assert again == []
    assert row.status == "CAPTURED"


def test_late_event_does_not_move_a_pledge_backwards() -> None:
    row = Row(status="CAPTURED")
    assert advance(row, P.AUTHORIZED, source="webhook", at=AT) == []
    assert advance(row, P.PENDING, source="webhook", at=AT) == []
    assert row.status == "CAPTURED"


@pytest.mark.parametrize("terminal", [P.FAILED, P.REFUNDED])
@pytest.mark.parametrize("target", list(P))
def test_terminal_states_exclude_every_event(
    terminal: PledgeStatus, target: PledgeStatus
) -> None:
    row = Row(status=terminal.value)
    assert advance(row, target, source="webhook", at=AT) == []
    assert row.status == terminal.value


def test_out_of_order_events_converge() -> None:
    """captured then authorized ends where authorized then captured ends."""
    in_order, reordered = Row(status="PENDING"), Row(status="PENDING")
    a = advance(in_order, P.AUTHORIZED, source="w", at=AT) + advance(
        in_order, P.CAPTURED, source="w", at=AT
    )
    b = advance(reordered, P.CAPTURED, source="w", at=AT) + advance(
        reordered, P.AUTHORIZED, source="w", at=AT
    )
    assert in_order.status == reordered.status == "CAPTURED"
    assert [(s.from_status, s.to_status) for s in a] == [
        (s.from_status, s.to_status) for s in b
    ]


# --- totals and campaign statuses ---------------------------------------------


@pytest.mark.parametrize("status", list(P))
def test_only_captured_counts_in_totals(status: PledgeStatus) -> None:
    expected = status == P.CAPTURED
    assert counts_in_totals(status.value) is expected
    assert counts_in_totals(status) is expected


C = CampaignStatus


A = CampaignAction
# Every allowed move: (action, from, to) -> who may make it.
EXPECTED_MOVES = {
    (A.MANAGE, C.ACTIVE, C.PAUSED): Actor.OWNER,
    (A.MANAGE, C.PAUSED, C.ACTIVE): Actor.OWNER,
    (A.MANAGE, C.ACTIVE, C.CLOSED): Actor.OWNER,
    (A.MANAGE, C.PAUSED, C.CLOSED): Actor.OWNER,
    (A.MANAGE, C.IN_REVIEW, C.CLOSED): Actor.OWNER,
    (A.MANAGE, C.SUSPENDED, C.ACTIVE): Actor.ADMIN,
    (A.MANAGE, C.SUSPENDED, C.CLOSED): Actor.ADMIN,
    (A.REVIEW, C.IN_REVIEW, C.ACTIVE): Actor.ADMIN,
    (A.REVIEW, C.IN_REVIEW, C.REJECTED): Actor.ADMIN,
    (A.SUSPEND, C.ACTIVE, C.SUSPENDED): Actor.ADMIN,
    (A.SUSPEND, C.PAUSED, C.SUSPENDED): Actor.ADMIN,
}


@pytest.mark.parametrize(
    "move",
    list(itertools.product(A, C, C)),
    ids=lambda m: f"{m[0]}:{m[1]}->{m[2]}",
)
def test_campaign_moves(
    move: tuple[CampaignAction, CampaignStatus, CampaignStatus],
) -> None:
    assert campaign_move(*move) is EXPECTED_MOVES.get(move)


def test_closed_and_rejected_campaigns_never_move() -> None:
    for action, target in itertools.product(A, C):
        assert campaign_move(action, C.CLOSED, target) is None
        assert campaign_move(action, C.REJECTED, target) is None


def test_only_an_admin_lifts_a_suspension_or_decides_a_review() -> None:
    assert campaign_move(A.MANAGE, C.SUSPENDED, C.ACTIVE) is Actor.ADMIN
    assert campaign_move(A.MANAGE, C.IN_REVIEW, C.ACTIVE) is None  # review it
    assert campaign_move(A.MANAGE, C.ACTIVE, C.SUSPENDED) is None  # suspend it

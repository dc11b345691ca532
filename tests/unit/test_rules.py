"""Who may see pledges and manage campaigns; the require_* guards."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from careforall.domain.errors import Forbidden, Unauthenticated
from careforall.domain.rules import (
    Principal,
    is_donor_of,
    may_manage_campaign,
    may_see_pledge,
    require_admin,
    require_principal,
    require_user,
)
from careforall.domain.states import Role


@dataclass
class PledgeRow:
    donor_user_id: str | None
    donor_session_id: str | None


@dataclass
class CampaignRow:
    owner_id: str


ALICE = Principal(kind="user", id="usr_alice")
BOB = Principal(kind="user", id="usr_bob")
ADMIN = Principal(kind="user", id="usr_admin", role=Role.ADMIN)
GUEST = Principal(kind="anon", id="anon_guest")
OTHER_GUEST = Principal(kind="anon", id="anon_other")

USER_PLEDGE = PledgeRow(donor_user_id="usr_alice", donor_session_id=None)
SESSION_PLEDGE = PledgeRow(donor_user_id=None, donor_session_id="anon_guest")
# Made by the guest session, then moved to Alice's account on register/login.
CLAIMED_PLEDGE = PledgeRow(donor_user_id="usr_alice", donor_session_id="anon_guest")


@pytest.mark.parametrize(
    ("principal", "pledge", "donor"),
    [
        (ALICE, USER_PLEDGE, True),
        (BOB, USER_PLEDGE, False),
        (ADMIN, USER_PLEDGE, False),
        (GUEST, USER_PLEDGE, False),
        (GUEST, SESSION_PLEDGE, True),
        (OTHER_GUEST, SESSION_PLEDGE, False),
        (ALICE, SESSION_PLEDGE, False),
        (ADMIN, SESSION_PLEDGE, False),
        (ALICE, CLAIMED_PLEDGE, True),
        (GUEST, CLAIMED_PLEDGE, False),
        (BOB, CLAIMED_PLEDGE, False),
    ],
)
def test_is_donor_of(principal: Principal, pledge: PledgeRow, donor: bool) -> None:
    assert is_donor_of(principal, pledge) is donor


@pytest.mark.parametrize(
    ("principal", "pledge", "visible"),
    [
        (ALICE, USER_PLEDGE, True),
        (BOB, USER_PLEDGE, False),
        (GUEST, USER_PLEDGE, False),
        (ADMIN, USER_PLEDGE, True),
        (GUEST, SESSION_PLEDGE, True),
        (OTHER_GUEST, SESSION_PLEDGE, False),
        (ALICE, SESSION_PLEDGE, False),
        (ADMIN, SESSION_PLEDGE, True),
        (ALICE, CLAIMED_PLEDGE, True),
        (GUEST, CLAIMED_PLEDGE, False),  # claimed: the session no longer sees it
        (ADMIN, CLAIMED_PLEDGE, True),
    ],
)
def test_may_see_pledge(principal: Principal, pledge: PledgeRow, visible: bool) -> None:
    assert may_see_pledge(principal, pledge) is visible


def test_ids_of_different_kinds_never_match() -> None:
    """A user whose id equals a session id is not that session, and the reverse."""
    same_id_user = Principal(kind="user", id="anon_guest")
    same_id_anon = Principal(kind="anon", id="usr_alice")
    assert not may_see_pledge(same_id_user, SESSION_PLEDGE)
    assert not may_see_pledge(same_id_anon, USER_PLEDGE)
    assert not may_manage_campaign(same_id_anon, CampaignRow(owner_id="usr_alice"))


def test_an_anonymous_principal_is_never_admin() -> None:
    forged = Principal(kind="anon", id="anon_x", role=Role.ADMIN)
    assert not forged.is_admin
    assert not may_see_pledge(forged, USER_PLEDGE)
    assert not may_manage_campaign(forged, CampaignRow(owner_id="usr_alice"))


@pytest.mark.parametrize(
    ("principal", "allowed"),
    [(ALICE, True), (ADMIN, True), (BOB, False), (GUEST, False)],
)
def test_may_manage_campaign(principal: Principal, allowed: bool) -> None:
    assert may_manage_campaign(principal, CampaignRow(owner_id="usr_alice")) is allowed


def test_idempotency_scope_depends_on_kind() -> None:
    assert Principal(kind="user", id="x").scope == "user:x"
    assert Principal(kind="anon", id="x").scope == "anon:x"


def test_require_principal() -> None:
    with pytest.raises(Unauthenticated):
        require_principal(None)
    assert require_principal(GUEST) is GUEST
    assert require_principal(ALICE) is ALICE


def test_require_user() -> None:
    with pytest.raises(Unauthenticated):
        require_user(None)
    with pytest.raises(Unauthenticated):
        require_user(GUEST)
    assert require_user(ALICE) is ALICE
    assert require_user(ADMIN) is ADMIN


def test_require_admin() -> None:
    with pytest.raises(Unauthenticated):
        require_admin(None)
    with pytest.raises(Unauthenticated):
        require_admin(GUEST)
    with pytest.raises(Forbidden) as refused:
        require_admin(ALICE)
    assert refused.value.code == "FORBIDDEN"
    assert require_admin(ADMIN) is ADMIN

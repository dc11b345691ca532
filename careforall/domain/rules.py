"""Who may see and do what: pure checks on principals, pledges and campaigns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from careforall.domain.errors import Forbidden, Unauthenticated
from careforall.domain.states import HIDDEN_FROM_PUBLIC, Role


@dataclass(frozen=True)
class Principal:
    """The caller: a registered user or an anonymous session."""

    kind: str  # "user" or "anon"
    id: str
    role: Role = Role.DONOR

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def is_admin(self) -> bool:
        return self.kind == "user" and self.role == Role.ADMIN

    @property
    def scope(self) -> str:
        """The idempotency scope of this principal's keys."""
        return f"{self.kind}:{self.id}"


class PledgeOwnership(Protocol):
    donor_user_id: str | None
    donor_session_id: str | None


class CampaignOwnership(Protocol):
    owner_id: str


def require_principal(principal: Principal | None) -> Principal:
    if principal is None:
        raise Unauthenticated(
            "Sign in or start an anonymous session first (send its token as "
            "'Authorization: Bearer <token>')."
        )
    return principal


def require_user(principal: Principal | None) -> Principal:
    principal = require_principal(principal)
    if not principal.is_user:
        raise Unauthenticated("Sign in with an account to do this.")
    return principal


def require_admin(principal: Principal | None) -> Principal:
    principal = require_user(principal)
    if not principal.is_admin:
        raise Forbidden("Only an admin may do this.")
    return principal


def owns(principal: Principal, user_id: str | None, session_id: str | None) -> bool:
    """A record kept for a user is theirs; one not yet claimed, its session's."""
    if user_id is not None:
        return principal.is_user and principal.id == user_id
    return principal.kind == "anon" and principal.id == session_id


def is_donor_of(principal: Principal, pledge: PledgeOwnership) -> bool:
    """A pledge belongs to its user; one not yet claimed, to its session."""
    return owns(principal, pledge.donor_user_id, pledge.donor_session_id)


def may_see_pledge(principal: Principal, pledge: PledgeOwnership) -> bool:
    return principal.is_admin or is_donor_of(principal, pledge)


def may_manage_campaign(principal: Principal, campaign: CampaignOwnership) -> bool:
    return principal.is_admin or (
        principal.is_user and principal.id == campaign.owner_id
    )


class CampaignVisibility(CampaignOwnership, Protocol):
    status: str


def hidden_from_public(campaign: CampaignVisibility) -> bool:
    """A campaign waiting for review, or rejected, is not public."""
    return campaign.status in HIDDEN_FROM_PUBLIC


def may_see_campaign(principal: Principal | None, campaign: CampaignVisibility) -> bool:
    """Everyone sees a reviewed campaign; its organiser and admins see it always."""
    if not hidden_from_public(campaign):
        return True
    return principal is not None and may_manage_campaign(principal, campaign)

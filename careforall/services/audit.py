"""The audit log: who did what to which record, written inside the action's commit.

`record` only adds a row to the caller's unit of work; the caller commits it
together with the change it describes, so there is never an effect without
its audit row, nor an audit row for an effect that rolled back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from careforall.domain.rules import Principal
from careforall.models import AuditLog
from careforall.services.unit_of_work import UnitOfWork


def record(
    uow: UnitOfWork,
    *,
    actor: Principal | None,
    action: str,
    target_type: str,
    target_id: str,
    detail: Mapping[str, object] | None = None,
) -> AuditLog:
    """Add an audit row to the open transaction; `actor` None is the command line."""
    row = AuditLog(
        actor_user_id=actor.id if actor is not None and actor.is_user else None,
        action=action,
        target_type=target_type,
        target_id=target_id[:120],
        detail=json.dumps(dict(detail or {}), separators=(",", ":"), default=str),
    )
    uow.session.add(row)
    return row

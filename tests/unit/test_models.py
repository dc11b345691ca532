"""`models.built`: an ORM object made the way SQLAlchemy makes loaded rows.

It uses SQLAlchemy's instrumentation (`manager_of_class`, `new_instance`)
rather than the model's constructor; if a release changes those, this fails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect

from careforall.models import Pledge, built, table_of


def _row() -> dict[str, Any]:
    at = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    return {
        "id": "plg_1",
        "campaign_id": "cmp_1",
        "amount_cents": 2500,
        "currency": "USD",
        "status": "PENDING",
        "idempotency_scope": "user:usr_1",
        "idempotency_key": "k-1",
        "donor_user_id": "usr_1",
        "donor_session_id": None,
        "donor_name": "Ana",
        "donor_email": None,
        "message": None,
        "campaign_updates": True,
        "receipt_number": None,
        "receipt_issued_at": None,
        "payment_method": None,
        "failure_reason": None,
        "refunded_cents": 0,
        "dispute_status": None,
        "dispute_lost_cents": 0,
        "created_at": at,
        "updated_at": at,
        "recurring_donation_id": None,
        "recurring_period": None,
        "recurring_attempt": None,
    }


def test_a_built_row_reads_as_the_constructed_model() -> None:
    row = _row()
    assert set(row) == set(table_of(Pledge).c.keys())  # a value for every column
    made = built(Pledge, row)
    expected = Pledge(**row)
    assert isinstance(made, Pledge)
    for column in row:
        assert getattr(made, column) == getattr(expected, column), column


def test_a_built_row_is_instrumented_like_a_loaded_one() -> None:
    made = built(Pledge, _row())
    state = inspect(made)
    assert state.mapper is inspect(Pledge)
    # Not added to any session, and nothing is pending to be written.
    assert state.session is None
    assert not state.modified
    made.status = "AUTHORIZED"  # attribute events still fire
    assert state.modified

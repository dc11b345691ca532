"""Time and identifiers: aware UTC everywhere, ids that sort by creation."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """A client's timestamp in UTC; a value without a zone is read as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def new_id(prefix: str) -> str:
    """`<prefix>_` + 12 hex digits of milliseconds + 10 random hex digits.

    Ids of one kind sort in creation order, which keyset pagination uses.
    """
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(5).hex()}"

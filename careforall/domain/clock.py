"""Time and identifiers: aware UTC everywhere, ids that sort by creation."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

_id_lock = threading.Lock()
_last_us = 0  # the microsecond of the newest id


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """A client's timestamp in UTC; a value without a zone is read as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def new_id(prefix: str) -> str:
    """`<prefix>_` + 13 hex digits of microseconds + 10 random hex digits.

    Ids of one kind sort in creation order, which keyset pagination uses: the
    time part of each id a process makes is later than that of the one
    before (moved on by a microsecond when the clock has not, or went back).
    The other 40 bits are random for every id, so one id does not tell the
    next. (Ids of earlier versions had 12 hex digits of milliseconds; they
    start with "0" and still sort before every id made now.)
    """
    global _last_us
    with _id_lock:
        us = max(time.time_ns() // 1000, _last_us + 1)
        _last_us = us
    random_part = int.from_bytes(os.urandom(5), "big")
    return f"{prefix}_{us:013x}{random_part:010x}"

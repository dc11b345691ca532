"""Time and identifiers: aware UTC everywhere, ids that sort by creation."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

_id_lock = threading.Lock()
_last: tuple[int, int] = (0, 0)  # (milliseconds, random part) of the newest id
_RANDOM_LIMIT = 1 << 40


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """A client's timestamp in UTC; a value without a zone is read as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def new_id(prefix: str) -> str:
    """`<prefix>_` + 12 hex digits of milliseconds + 10 random hex digits.

    Ids of one kind sort in creation order, which keyset pagination uses:
    within one millisecond the random part counts up, so a process never
    hands out an id lower than one it gave before.
    """
    global _last
    with _id_lock:
        ms = int(time.time() * 1000)
        last_ms, last_random = _last
        if ms <= last_ms and last_random + 1 < _RANDOM_LIMIT:
            ms, random_part = last_ms, last_random + 1
        else:
            ms = max(ms, last_ms + (ms <= last_ms))
            random_part = int.from_bytes(os.urandom(5), "big") >> 1  # room to count up
        _last = (ms, random_part)
    return f"{prefix}_{ms:012x}{random_part:010x}"

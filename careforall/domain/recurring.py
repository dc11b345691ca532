"""Recurring gifts: intervals, statuses, when each period falls due, and the
retry schedule after a declined charge. Pure rules, no I/O."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from enum import StrEnum


class RecurringInterval(StrEnum):
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


class RecurringStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    CANCELLED = "CANCELLED"


# A declined period is tried again after 1, 3 and 7 days (from each decline);
# after the last of those the plan is PAUSED.
RETRY_DELAYS = (timedelta(days=1), timedelta(days=3), timedelta(days=7))


def period_due_at(
    start: datetime, interval: RecurringInterval, period: int
) -> datetime:
    """When period `period` (0 = the first, at `start`) falls due.

    Counted from the start every time, so the day never drifts: a plan
    started on the 31st is charged on the last day of shorter months and on
    the 31st again after them.
    """
    if interval == RecurringInterval.WEEKLY:
        return start + timedelta(weeks=period)
    months = start.month - 1 + period
    year, month = start.year + months // 12, months % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def retry_delay(declines: int) -> timedelta | None:
    """How long after the `declines`-th decline of a period to try again;
    None: no more tries, the plan pauses."""
    if 1 <= declines <= len(RETRY_DELAYS):
        return RETRY_DELAYS[declines - 1]
    return None


def charge_key(plan_id: str, period: int, attempt: int) -> str:
    """The idempotency key of one try of one period: the plan and the period
    (and the retry, for a period tried again after a decline)."""
    key = f"recurring:{plan_id}:{period}"
    return key if attempt == 0 else f"{key}:retry{attempt}"

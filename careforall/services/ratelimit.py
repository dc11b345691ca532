"""Rate limiting by token buckets: the bucket arithmetic, the interface the
entry points use, and the in-process limiter (one token bucket per key,
thread-safe, bounded). `ratelimit_shared` keeps the same buckets in a file
that several processes share."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from careforall.settings import Rate

DEFAULT_MAX_KEYS = 100_000

Checks = Sequence[tuple[str, Rate]]


def refill(tokens: float, at: float, now: float, rate: Rate) -> float:
    """A bucket's tokens at `now`, from `tokens` at `at`: refilled evenly over
    `rate.seconds`, never above `rate.count` (a clock gone back adds none)."""
    elapsed = max(0.0, now - at)
    return min(float(rate.count), tokens + elapsed * rate.count / rate.seconds)


def wait_seconds(tokens: float, rate: Rate) -> float:
    """How long a bucket holding `tokens` (less than one) takes to hold one."""
    return (1 - tokens) * rate.seconds / rate.count


class Limiter(Protocol):
    """What the entry points ask of a rate limiter, in one process or shared
    by several (see RateLimiter for what each call means)."""

    def hit(self, checks: Checks, require: Checks = ()) -> int | None: ...

    def take(self, checks: Checks) -> None: ...

    def give_back(self, checks: Checks) -> None: ...

    def empty(self, key: str, rate: Rate) -> bool: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets keyed by strings such as `login:address:203.0.113.9`.

    A bucket holds up to `rate.count` tokens and refills evenly over
    `rate.seconds`, so a burst of `count` requests passes and then one more
    every `seconds / count`. Only the `max_keys` most recently used keys are
    kept; an evicted key starts again with a full bucket. One process only:
    several processes share theirs through `SharedRateLimiter`.
    """

    def __init__(
        self,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def hit(
        self,
        checks: Sequence[tuple[str, Rate]],
        require: Sequence[tuple[str, Rate]] = (),
    ) -> int | None:
        """Take one token from each of `checks`' buckets, or none at all.

        Returns None when every bucket of `checks` and of `require` had a token
        (`require`'s are only looked at, never taken from); otherwise the whole
        seconds until all of them will have one again (at least 1), and takes
        nothing. A refused call leaves no new key behind: otherwise a flood of
        refused calls would push the buckets of others out.
        """
        with self._lock:
            now = self.clock()
            wait = max(
                (
                    wait_seconds(tokens, rate)
                    for key, rate in (*checks, *require)
                    if (tokens := self._tokens(key, rate, now)) < 1
                ),
                default=None,
            )
            if wait is not None:
                return max(1, math.ceil(wait))
            for key, rate in checks:
                self._refilled(key, rate, now).tokens -= 1
            return None

    def take(self, checks: Sequence[tuple[str, Rate]]) -> None:
        """Take one token from each bucket, down to empty (a failure counted)."""
        with self._lock:
            now = self.clock()
            for key, rate in checks:
                bucket = self._refilled(key, rate, now)
                bucket.tokens = max(0.0, bucket.tokens - 1)

    def give_back(self, checks: Sequence[tuple[str, Rate]]) -> None:
        """Return one token to each bucket, up to full (a reservation undone)."""
        with self._lock:
            now = self.clock()
            for key, rate in checks:
                bucket = self._refilled(key, rate, now)
                bucket.tokens = min(float(rate.count), bucket.tokens + 1)

    def empty(self, key: str, rate: Rate) -> bool:
        """Whether the key's bucket has no whole token (adds no key)."""
        with self._lock:
            return self._tokens(key, rate, self.clock()) < 1

    def _tokens(self, key: str, rate: Rate, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(rate.count)
        return refill(bucket.tokens, bucket.at, now, rate)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def close(self) -> None:
        """Nothing to release: the counts go with the process."""

    def _refilled(self, key: str, rate: Rate, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(rate.count), at=now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = refill(bucket.tokens, bucket.at, now, rate)
            bucket.at = now
        return bucket

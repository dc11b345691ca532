"""Password hashes (argon2id) with a bound on how many run at once, and the
strength check new passwords pass."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from careforall.domain.errors import BadUserInput, RateLimited

T = TypeVar("T")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

# OWASP's argon2id recommendation: 19 MiB, two passes, one lane. About 30 ms
# and 19 MiB a hash; the library's defaults (64 MiB, 3 passes, 4 lanes) took
# 2 GB and seconds a login once 30 of them ran at once.
TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1
_HASHER = PasswordHasher(
    time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM
)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class HashGate:
    """At most `slots` hashes run at once, in threads of their own, and up to
    `queue` more wait for one (at most `wait` seconds); any more are refused
    with RATE_LIMITED. A burst of sign-ins so costs bounded memory and CPU
    whatever the size of the server's thread pool, and the rest of the server
    keeps answering.

    Threads of their own because argon2's memory comes from malloc: every
    thread that hashed would keep an arena holding a hash's worth of memory
    (glibc), so 40 pool threads taking turns would hold 40 times 19 MiB.
    """

    def __init__(self, slots: int, queue: int, wait: float = 2.0) -> None:
        self.slots = slots
        self.limit = slots + queue
        self.wait = wait
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="hash")
        self._lock = threading.Lock()
        self._admitted = 0

    def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._admitted >= self.limit:
                raise _busy()
            self._admitted += 1
        future = self._pool.submit(fn)
        future.add_done_callback(self._done)  # also when cancelled
        try:
            return future.result(timeout=self.wait)
        except TimeoutError:
            future.cancel()
            raise _busy() from None

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._admitted -= 1


def _busy() -> RateLimited:
    return RateLimited(
        "Too many passwords are being checked right now; wait 1 seconds and try again.",
        retry_after_seconds=1,
    )


# One hash per core; each waiting call holds a worker thread, so few wait
# (a hash takes about 30 ms: the last of them waits about a quarter second).
GATE = HashGate(slots=_cores(), queue=8 * _cores())


def hash_password(password: str) -> str:
    hasher = _HASHER  # as the caller's thread sees it (tests replace it)
    return GATE.run(lambda: hasher.hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    hasher = _HASHER

    def verify() -> bool:
        try:
            return hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return GATE.run(verify)


def needs_rehash(password_hash: str) -> bool:
    """Made with other parameters than today's (an older, costlier default)."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


# Verified against when an email is unknown, so both failures take as long.
_DUMMY_HASH = _HASHER.hash("not a real password")


def dummy_verify(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The passwords people pick most (case folded), read once from the package."""
    text = (
        resources.files("careforall")
        .joinpath("data", "common-passwords.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip().casefold()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def check_password(password: str) -> None:
    """Refuse a password too short, too long, or among the most common."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadUserInput(
            f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise BadUserInput("That password is too long.")
    if password.strip().casefold() in common_passwords():
        raise BadUserInput(
            "That password is one of the most common ones, which are guessed "
            "first; choose another."
        )

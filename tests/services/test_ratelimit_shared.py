"""Rate limits shared by the processes of one server (`serve --workers N`):
two limiters on one file, as two processes hold them, answer as one
in-process limiter would; two real processes hitting one key pass exactly the
bucket's count between them; full buckets are pruned and storage is bounded."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from careforall.app import create_app
from careforall.services.ratelimit import RateLimiter
from careforall.services.ratelimit_shared import SharedRateLimiter
from careforall.settings import Rate, Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_765_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "counts.sqlite"


@pytest.fixture
def pair(
    store: Path, clock: Clock
) -> Iterator[tuple[SharedRateLimiter, SharedRateLimiter]]:
    """Two limiters on one file, as two worker processes hold them."""
    one = SharedRateLimiter(store, clock=clock)
    two = SharedRateLimiter(store, clock=clock)
    yield one, two
    one.close()
    two.close()


def test_a_burst_is_shared_then_the_next_waits_for_its_token(
    pair: tuple[SharedRateLimiter, SharedRateLimiter], clock: Clock
) -> None:
    one, two = pair
    rate = Rate(3, 60)
    assert [one.hit([("k", rate)]), two.hit([("k", rate)])] == [None, None]
    assert one.hit([("k", rate)]) is None
    assert two.hit([("k", rate)]) == 20  # one token every 60/3 seconds
    assert one.hit([("k", rate)]) == 20
    clock.now += 19.5
    assert two.hit([("k", rate)]) == 1  # rounded up, never 0
    clock.now += 0.5
    assert one.hit([("k", rate)]) is None
    assert two.hit([("k", rate)]) == 20


def test_a_refused_hit_takes_nothing_and_makes_no_key(
    pair: tuple[SharedRateLimiter, SharedRateLimiter],
) -> None:
    one, two = pair
    full, wide = Rate(1, 60), Rate(5, 60)
    assert one.hit([("address", full)]) is None
    for i in range(10):
        assert two.hit([("address", full), (f"email{i}", full)]) == 60
    assert len(one) == len(two) == 1
    assert one.hit([("wide", wide), ("narrow", full)]) is None
    assert two.hit([("wide", wide), ("narrow", full)]) == 60
    # "wide" kept its tokens: 4 left after the one successful hit.
    assert [one.hit([("wide", wide)]) for _ in range(5)] == [None] * 4 + [12]


def test_failures_counted_in_one_process_slow_down_the_other(
    pair: tuple[SharedRateLimiter, SharedRateLimiter], clock: Clock
) -> None:
    """The per-email wrong-password count: taken in one process (down to
    empty, never below), looked at and given back in the other."""
    one, two = pair
    rate = Rate(2, 60)
    assert one.hit([("call", rate)], require=[("failures", rate)]) is None
    assert not two.empty("failures", rate) and len(two) == 1
    one.take([("failures", rate)])
    two.take([("failures", rate)])
    one.take([("failures", rate)])  # never below empty
    assert two.empty("failures", rate)
    assert two.hit([("call", rate)], require=[("failures", rate)]) == 30
    one.give_back([("failures", rate)])
    assert not two.empty("failures", rate)
    two.give_back([("failures", rate)] * 5)  # never above full
    assert [one.hit([("failures", rate)]) for _ in range(3)] == [None, None, 30]
    clock.now += 30
    assert two.hit([("call", rate)], require=[("failures", rate)]) is None


def test_any_sequence_of_calls_answers_as_one_process_would(
    pair: tuple[SharedRateLimiter, SharedRateLimiter], clock: Clock
) -> None:
    """Random calls spread over the two limiters get the in-process answers."""
    alone = RateLimiter(clock=clock)
    rates = {"a": Rate(3, 60), "b": Rate(5, 10), "c": Rate(1, 300)}
    draw = random.Random(20)
    for _ in range(2000):
        shared = pair[draw.randrange(2)]
        keys = draw.sample(sorted(rates), draw.randint(1, 3))
        checks = [(key, rates[key]) for key in keys]
        action = draw.choice(["hit", "hit", "hit", "take", "give_back", "empty"])
        if action == "hit":
            assert shared.hit(checks[:-1], checks[-1:]) == alone.hit(
                checks[:-1], checks[-1:]
            )
        elif action == "empty":
            assert shared.empty(*checks[0]) == alone.empty(*checks[0])
        else:
            getattr(shared, action)(checks)
            getattr(alone, action)(checks)
        clock.now += draw.choice([0.0, 0.5, 3.0, 40.0])


def test_full_buckets_are_pruned_and_storage_is_bounded(
    store: Path, clock: Clock
) -> None:
    limiter = SharedRateLimiter(store, clock=clock, max_keys=50, prune_every=10)
    rate = Rate(2, 60)
    for i in range(200):
        limiter.hit([(f"caller{i}", rate)])
        clock.now += 0.01
        # Pruned every 10 writes: never more than the bound and 10 more.
        assert len(limiter) <= 60
    # The most recent keep counting: the nearest to full went first.
    assert limiter.hit([("caller199", rate)]) is None
    assert limiter.hit([("caller199", rate)]) == 30
    clock.now += 60  # every bucket is full again: nothing left to keep
    limiter.prune()
    assert len(limiter) == 0
    limiter.close()


def test_reset_empties_the_store_for_every_process(
    pair: tuple[SharedRateLimiter, SharedRateLimiter],
) -> None:
    one, two = pair
    rate = Rate(1, 60)
    one.hit([("k", rate)])
    two.reset()
    assert one.hit([("k", rate)]) is None


# --- two real processes ----------------------------------------------------------

BUCKET = Rate(2000, 100_000_000)  # refills nothing while the test runs
HITS_EACH = 2000  # each alone would empty it: they race for the last tokens


def _hit_many(path: str, start: Barrier, passed: multiprocessing.Queue[int]) -> None:
    limiter = SharedRateLimiter(path)
    len(limiter)  # the file is open before the race starts
    start.wait(timeout=30)
    passes = sum(limiter.hit([("shared", BUCKET)]) is None for _ in range(HITS_EACH))
    limiter.close()
    passed.put(passes)


def test_two_processes_on_one_key_pass_the_buckets_count_between_them(
    store: Path,
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    passed: multiprocessing.Queue[int] = context.Queue()
    workers = [
        context.Process(target=_hit_many, args=(str(store), start, passed))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    counts = [passed.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    print(f"passes per process: {counts}")
    # Each would pass BUCKET.count alone. However the two interleaved (on a
    # busy machine one may even finish before the other starts, [2000, 0]),
    # together they pass exactly one bucket's count.
    assert sum(counts) == BUCKET.count


def test_a_store_that_cannot_be_opened_stops_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder" / "counts.sqlite"
    with pytest.raises(RuntimeError, match="CAREFORALL_RATE_LIMIT_STORE"):
        create_app(Settings(rate_limit_store=str(missing)))

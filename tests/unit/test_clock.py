"""Ids sort in creation order, even within one millisecond and across threads,
and one id does not tell the next."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from careforall.domain.clock import new_id


def test_ids_from_one_thread_strictly_increase() -> None:
    ids = [new_id("plg") for _ in range(20_000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("plg_") and len(i) == 4 + 23 for i in ids)


def test_ids_from_many_threads_are_unique_and_each_thread_increases() -> None:
    def batch(_: int) -> list[str]:
        return [new_id("x") for _ in range(2_000)]

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(batch, range(8)))
    everything = [i for b in batches for i in b]
    assert len(set(everything)) == len(everything)
    assert all(b == sorted(b) for b in batches)


def test_the_random_part_of_each_id_is_random_not_counted_up() -> None:
    ids = [new_id("plg") for _ in range(5_000)]  # many within one millisecond
    randoms = [int(i[-10:], 16) for i in ids]
    steps = [b - a for a, b in zip(randoms, randoms[1:], strict=False)]
    # Counting up from a random start makes most steps +1; random parts almost
    # never differ by 1, 2 or 3.
    assert sum(1 for step in steps if 0 < step < 4) < 5
    # About half the steps go down, and the high bit is used as much as the low.
    assert 1_500 < sum(1 for step in steps if step < 0) < 3_500
    assert 1_500 < sum(1 for r in randoms if r >> 39) < 3_500


def test_ids_of_earlier_versions_sort_before_ids_made_now() -> None:
    earlier = "plg_0193b1f0c2a4" + "ffffffffff"  # 12 hex digits of milliseconds
    assert earlier < new_id("plg")

"""Ids sort in creation order, even within one millisecond and across threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from careforall.domain.clock import new_id


def test_ids_from_one_thread_strictly_increase() -> None:
    ids = [new_id("plg") for _ in range(20_000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("plg_") and len(i) == 4 + 22 for i in ids)


def test_ids_from_many_threads_are_unique_and_each_thread_increases() -> None:
    def batch(_: int) -> list[str]:
        return [new_id("x") for _ in range(2_000)]

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(batch, range(8)))
    everything = [i for b in batches for i in b]
    assert len(set(everything)) == len(everything)
    assert all(b == sorted(b) for b in batches)

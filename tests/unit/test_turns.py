"""The write turn of one process: handed to the waiting threads in order."""

from __future__ import annotations

import threading
import time

from careforall.sqlite import Turns


def test_the_turn_goes_to_the_waiters_in_the_order_they_came() -> None:
    turns = Turns()
    assert turns.acquire(timeout=1)
    order: list[int] = []
    threads = []

    def take(n: int) -> None:
        assert turns.acquire(timeout=10)
        order.append(n)
        turns.release()

    for n in range(3):
        thread = threading.Thread(target=take, args=(n,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 10
        while len(turns._waiting) < n + 1:  # queued before the next one comes
            assert time.monotonic() < deadline
            time.sleep(0.001)
    # A thread that comes along now does not pass the waiters.
    assert not turns.acquire(timeout=0)
    turns.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2]
    assert turns.acquire(timeout=0)  # free again
    turns.release()


def test_a_wait_that_runs_out_leaves_the_queue() -> None:
    turns = Turns()
    assert turns.acquire(timeout=1)
    assert not turns.acquire(timeout=0.05)
    assert not turns._waiting
    turns.release()
    assert turns.acquire(timeout=0)

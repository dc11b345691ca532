"""The garbage collector, set for a server that holds many objects for long.

A full collection walks every object the process holds and stalls the event
loop meanwhile. Two things made those stalls the tail of the latencies:

- What start-up made (modules, the schema, the pools) lives as long as the
  process. Walking it took 50-80 ms and was the whole p99 of campaignTotals
  at 1,000 req/s (83 ms; 2.5 ms once frozen out of every pass).
- Each open subscription holds a few hundred objects. With 5,000 of them a
  full pass took over a second, in the middle of pushing a donation to them
  (p99 capture -> receipt 1.8 s). While many are open, full passes are made
  a hundred times rarer (0.47 s); with few, Python's default stands, so
  garbage does not pile up on a server that answers requests only (with the
  rare setting throughout, a createPledge burst left it at 351 MB, not 136).
"""

from __future__ import annotations

import gc
import threading

from careforall import metrics

# Python's default: a full pass after 10 passes of the middle generation.
DEFAULT_FULL_THRESHOLD = 10
BUSY_FULL_THRESHOLD = 1000
# Open subscriptions from which full passes are made rarer.
MANY_SUBSCRIPTIONS = 1000

_lock = threading.Lock()
_frozen = False
_open = 0


def freeze_startup_heap() -> None:
    """Leave what exists now out of every future pass. Once per process, so
    apps started again in one process (tests) do not pin each other's objects."""
    global _frozen
    with _lock:
        if _frozen:
            return
        _frozen = True
    gc.collect()
    gc.freeze()


def _set_full_threshold(value: int) -> None:
    young, middle, _full = gc.get_threshold()
    gc.set_threshold(young, middle, value)


def _count(delta: int) -> None:
    global _open
    with _lock:
        before, _open = _open, _open + delta
        now = _open
    if (before >= MANY_SUBSCRIPTIONS) != (now >= MANY_SUBSCRIPTIONS):
        _set_full_threshold(
            BUSY_FULL_THRESHOLD if now >= MANY_SUBSCRIPTIONS else DEFAULT_FULL_THRESHOLD
        )


class open_subscription:  # named as the function it replaces
    """Around a subscription's life: counted (metrics, collector settings).

    A class rather than a @contextmanager: its generator and wrapper would
    stay with each of thousands of open subscriptions.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        metrics.SUBSCRIPTIONS_OPEN.inc()
        _count(+1)

    def __exit__(self, *exc_info: object) -> None:
        _count(-1)
        metrics.SUBSCRIPTIONS_OPEN.dec()

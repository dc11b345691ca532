"""The garbage collector's settings follow the open subscriptions."""

from __future__ import annotations

import gc
from contextlib import ExitStack

import pytest

from careforall import collector
from careforall.collector import (
    BUSY_FULL_THRESHOLD,
    DEFAULT_FULL_THRESHOLD,
    open_subscription,
)


def test_full_collections_are_rarer_only_while_many_subscriptions_are_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collector, "MANY_SUBSCRIPTIONS", collector._open + 3)
    saved = gc.get_threshold()
    try:
        with ExitStack() as three:
            for _ in range(2):
                three.enter_context(open_subscription())
            assert gc.get_threshold()[2] == saved[2]  # below the mark: unchanged
            three.enter_context(open_subscription())
            young, middle, full = gc.get_threshold()
            assert (young, middle, full) == (saved[0], saved[1], BUSY_FULL_THRESHOLD)
            with open_subscription():
                assert gc.get_threshold()[2] == BUSY_FULL_THRESHOLD
            assert gc.get_threshold()[2] == BUSY_FULL_THRESHOLD
        # All closed, even the way out of a failing subscription: the default.
        with pytest.raises(RuntimeError):
            with ExitStack() as failing:
                for _ in range(3):
                    failing.enter_context(open_subscription())
                raise RuntimeError("connection lost")
        assert gc.get_threshold()[2] == DEFAULT_FULL_THRESHOLD
    finally:
        gc.set_threshold(*saved)

"""Flag and Mailbox behave as the asyncio.Event and asyncio.Queue they replace."""

from __future__ import annotations

import asyncio

import pytest

from careforall.signals import Flag, Mailbox


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_flag_wakes_every_waiter_once_set_and_not_after_clear() -> None:
    async def scenario() -> None:
        flag = Flag()
        assert not flag.is_set()
        waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
        await _settle()
        assert not any(w.done() for w in waiters)
        flag.set()
        assert await asyncio.gather(*waiters) == [True, True, True]
        assert await flag.wait() is True  # already set: at once
        flag.clear()
        late = asyncio.create_task(flag.wait())
        await _settle()
        assert not late.done()
        flag.set()
        assert await late is True

    asyncio.run(scenario())


def test_a_cancelled_flag_waiter_leaves_the_others_waiting() -> None:
    async def scenario() -> None:
        flag = Flag()
        first = asyncio.create_task(flag.wait())
        second = asyncio.create_task(flag.wait())
        await _settle()
        first.cancel()
        await _settle()
        assert first.cancelled()
        assert not second.done()
        flag.set()
        assert await second is True

    asyncio.run(scenario())


def test_a_flag_made_set_does_not_wait() -> None:
    async def scenario() -> None:
        assert await Flag(True).wait() is True

    asyncio.run(scenario())


def test_a_mailbox_hands_out_items_in_order_and_waits_when_empty() -> None:
    async def scenario() -> None:
        box: Mailbox[int] = Mailbox()
        assert box.empty()
        box.put_nowait(1)
        box.put_nowait(2)
        assert box.qsize() == 2
        assert await box.get() == 1
        assert await box.get() == 2
        assert box.empty()
        reader = asyncio.create_task(box.get())
        await _settle()
        assert not reader.done()
        box.put_nowait(3)
        assert await reader == 3

    asyncio.run(scenario())


def test_a_cancelled_mailbox_reader_loses_no_item() -> None:
    async def scenario() -> None:
        box: Mailbox[str] = Mailbox()
        first = asyncio.create_task(box.get())
        second = asyncio.create_task(box.get())
        await _settle()
        box.put_nowait("a")
        first.cancel()  # woken and cancelled in the same turn
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await asyncio.wait_for(second, 1) == "a"

    asyncio.run(scenario())
